//! Compiles the .proto contracts with protoc (Debian `protobuf-compiler`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "fjord/v1/state.proto",
        "fjord/v1/controller.proto",
        "fjord/v1/media_node.proto",
        "fjord/v1/recording_node.proto",
        "fjord/v1/relay.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["."])?;
    Ok(())
}
