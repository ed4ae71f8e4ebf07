//! Rebuild when bpf-linker changes, and fail early with the exact install command when it is
//! missing (the link step would otherwise fail with an obscure "linker not found").

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => {
            println!(
                "cargo:warning=bpf-linker not found on PATH: run `cargo xtask build-ebpf` \
                 (installs it) or `cargo install bpf-linker@0.10.4 --locked`"
            );
            std::process::exit(1);
        }
    }
}
