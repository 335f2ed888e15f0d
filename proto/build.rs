//! Compiles every carelog contract with protox (no system `protoc`) and writes
//! the file descriptor set that gRPC server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    collect(std::path::Path::new("carelog"), &mut files)?;
    files.sort();
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("carelog_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=carelog");
    Ok(())
}

/// Every `.proto` file under `dir`, as paths relative to the proto root.
fn collect(dir: &std::path::Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
