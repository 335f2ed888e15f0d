//! Compiles every carelog contract with protox (no system `protoc`) and writes
//! the file descriptor set that gRPC server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "carelog/kernel/v1/types.proto",
        "carelog/kernel/v1/envelope.proto",
        "carelog/demographics/v1/types.proto",
        "carelog/demographics/v1/events.proto",
        "carelog/demographics/v1/demographics.proto",
    ];
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
