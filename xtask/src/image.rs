//! `cargo xtask image`: the OCI image (owned by the image work in progress; see issue 12).

use std::path::Path;

use anyhow::bail;

/// Builds the image `tag`, and saves it as an OCI archive at `save` if given.
pub(crate) fn build(_root: &Path, _tag: &str, _save: Option<&Path>) -> anyhow::Result<()> {
    bail!("the image build is being built (issue 12)")
}
