//! The SPIFFE Workload API protocol (gRPC over a Unix socket), generated once here from
//! `proto/workload.proto` for the agent (server) and relying parties (client).

use std::path::Path;

/// The generated protocol types and client (`/SpiffeWorkloadAPI/...`), and the server with
/// the `workload-api-server` feature.
#[allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// The metadata every Workload API call must carry (it stops browsers and proxies from
/// reaching the socket by accident).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// A Workload API client.
pub type WorkloadApiClient =
    proto::spiffe_workload_api_client::SpiffeWorkloadApiClient<tonic::transport::Channel>;

/// A gRPC channel to the Workload API's Unix socket at `path`. The connection is made lazily
/// and again after it breaks (an agent restart), so a long-lived client keeps working.
pub fn channel(path: &Path) -> tonic::transport::Channel {
    let path = path.to_path_buf();
    // The URI is required by the HTTP/2 layer and ignored by the connector.
    tonic::transport::Endpoint::from_static("http://localhost").connect_with_connector_lazy(
        tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }),
    )
}

/// A Workload API client on the Unix socket at `path` (see [`channel`]).
pub fn client(path: &Path) -> WorkloadApiClient {
    WorkloadApiClient::new(channel(path))
}

/// A request carrying the Workload API security header.
pub fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    r
}

/// The socket path of a `SPIFFE_ENDPOINT_SOCKET` value (`unix:///path` or `unix:/path`; a bare
/// path is accepted too). Other schemes (`tcp:`) are refused.
pub fn socket_path(endpoint: &str) -> Option<std::path::PathBuf> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    (p.starts_with('/') && !endpoint.starts_with("tcp:")).then(|| p.into())
}
