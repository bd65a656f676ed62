//! With the `workload-api` feature: compile the SPIFFE Workload API protocol with protox (pure
//! Rust: no protoc needed) and generate the tonic client, and the server too with
//! `workload-api-server` (the agent's), so relying parties build no gRPC server code.

#[cfg(not(feature = "workload-api"))]
fn main() {}

#[cfg(feature = "workload-api")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/workload.proto");
    let server = std::env::var_os("CARGO_FEATURE_WORKLOAD_API_SERVER").is_some();
    let fds = protox::compile(["workload.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
