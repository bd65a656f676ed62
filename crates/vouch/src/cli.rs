//! Command-line flags, parsed into raw types; `commands` validates them into typed config.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Vouch: workload attestation and identity.
#[derive(Debug, Parser)]
#[command(name = "vouch", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML with [server] and [agent] sections).
    #[arg(long, global = true, env = "VOUCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text, or as JSON objects (one a line, with the request id of the call
    /// they belong to), on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VOUCH_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object a line.
    Json,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "warn,vouch=info,vouch_server=info,vouch_agent=info",
            1 => "info",
            _ => "debug",
        }
    }
}

/// Where the verifier keeps its state (`vouch server`, `vouch migrate`).
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Verifier data directory (default from the config file, else .vouch/server).
    #[arg(long, env = "VOUCH_SERVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Which verifier an admin command talks to (issue 16 item 1). Admin commands go through the
/// verifier's authenticated API, never its store or key files. Flags win over environment
/// variables, which win over a context (`vouch context`); `--data-dir` of a verifier on this
/// machine reads the context it published there at start.
#[derive(Debug, Args, Clone, Default)]
pub struct AdminArgs {
    /// The verifier's URL, e.g. https://verifier.example:8443.
    #[arg(long = "server", env = "VOUCH_SERVER")]
    pub server: Option<String>,
    /// File holding the bearer token: the verifier's keys/admin.token or read.token, or a
    /// scoped API token.
    #[arg(long, env = "VOUCH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (prefer --token-file: flags show in the process list).
    #[arg(long, env = "VOUCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) the verifier's TLS certificate chains to (default: the system's).
    #[arg(long = "ca-cert", visible_alias = "ca", env = "VOUCH_SERVER_CA")]
    pub ca_cert: Option<PathBuf>,
    /// A context of the context file (default: its current context).
    #[arg(long, env = "VOUCH_CONTEXT")]
    pub context: Option<String>,
    /// The verifier tenant to manage (its routes /t/<tenant>/...; the token must be one of
    /// that tenant's). Default: the verifier's default tenant.
    #[arg(long, env = "VOUCH_TENANT")]
    pub tenant: Option<String>,
    /// The data directory of a verifier running on this machine: use the context it
    /// published there (context.toml). Nothing else in it is read.
    #[arg(long, env = "VOUCH_SERVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What an agent measures and where it sends evidence.
#[derive(Debug, Args, Clone, Default)]
pub struct AgentArgs {
    /// Verifier URL; repeat for fail-over (default from config, else https://127.0.0.1:8443).
    #[arg(long = "server")]
    pub servers: Vec<String>,
    /// The verifier tenant this node belongs to (its routes /t/<tenant>/...; default: the
    /// verifier's default tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// CA certificate (PEM) to trust for the verifier.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Agent state directory (key, enrollment, latest result).
    #[arg(long)]
    pub agent_dir: Option<PathBuf>,
    /// One-time join token, for the first run.
    #[arg(long, env = "VOUCH_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// Name of the workload being attested.
    #[arg(long)]
    pub workload: Option<String>,
    /// The workload's executable (default: this program).
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// A configuration file to measure; repeat for more.
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
    /// Container image digest of the workload.
    #[arg(long)]
    pub image_digest: Option<String>,
    /// Audience to put in results.
    #[arg(long)]
    pub result_audience: Option<String>,
    /// Attest with the TPM reached by this TCTI (device:/dev/tpmrm0, swtpm:host=…,port=…).
    #[arg(long)]
    pub tpm_tcti: Option<String>,
    /// TPM key algorithm: rsa or ecc.
    #[arg(long, value_parser = ["rsa", "ecc"])]
    pub tpm_key_alg: Option<String>,
    /// SHA-256 PCRs to quote, comma-separated (default 0-10,14).
    #[arg(long, value_delimiter = ',')]
    pub tpm_pcrs: Vec<u8>,
    /// Serve the SPIFFE Workload API on this Unix socket.
    #[arg(long)]
    pub workload_api_socket: Option<std::path::PathBuf>,
    /// Serve the secret socket here: local callers ask for secrets by name (`vouch secret get`).
    #[arg(long)]
    pub secret_socket: Option<std::path::PathBuf>,
    /// SPIFFE trust domain of the verifier (default vouch.local).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Firmware event log to send with quotes
    /// (default /sys/kernel/security/tpm0/binary_bios_measurements, when present).
    #[arg(long)]
    pub tpm_eventlog: Option<std::path::PathBuf>,
    /// Give Workload API callers `container:` selectors, asking the container runtime's
    /// Docker-compatible API on this socket (podman system service, dockerd).
    #[arg(long, env = "VOUCH_CONTAINER_RUNTIME_SOCKET")]
    pub container_runtime_socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the verifier.
    Server {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve plain HTTP (loopback only, for development).
        #[arg(long)]
        insecure_http: bool,
        /// Apply pending schema migrations to the store first (back it up before). Without
        /// it, a store with an older schema is refused; a new, empty one is created.
        #[arg(long, env = "VOUCH_SERVER_MIGRATE")]
        migrate: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Apply pending schema migrations to the verifier's store, then exit. Nothing else
    /// migrates a database (`vouch server` refuses an older schema unless --migrate).
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Contexts: which verifier admin commands talk to, with which credential (like kubectl's).
    #[command(subcommand)]
    Context(crate::commands::context::ContextCmd),
    /// Run the agent: enroll once, then attest continuously.
    Agent {
        #[command(flatten)]
        agent: AgentArgs,
        /// Serve the agent's /metrics and /healthz on this address (plain HTTP; loopback
        /// unless a scraper must reach it).
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Seconds between attestations.
        #[arg(long)]
        interval: Option<u64>,
    },
    /// Attest once and print the result.
    Attest {
        #[command(flatten)]
        agent: AgentArgs,
        /// For pipelines: one JSON object on standard output (status, exit_code,
        /// attestation_id, result_path, reasons); exit 0 affirming, 1 refused or
        /// contraindicated (or warning without --accept-warning), 2 a local error, 3 no
        /// verifier reachable (docs/CI.md).
        #[arg(long)]
        ci: bool,
        /// With --ci: a `warning` result passes (exit 0).
        #[arg(long, requires = "ci")]
        accept_warning: bool,
    },
    /// Verify an attestation result (EAR JWT) offline against a JWKS. Exits 0 valid, 1
    /// rejected (the reason on stderr), 2 a local error, 3 the --jwks URL unreachable.
    Verify(VerifyArgs),
    /// Manage appraisal policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Manage reference values.
    #[command(subcommand)]
    Refvalue(RefvalueCmd),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage a tenant's scoped API tokens (admin, operator, auditor), through the API.
    #[command(subcommand)]
    ApiToken(ApiTokenCmd),
    /// Inspect workloads.
    #[command(subcommand)]
    Workload(WorkloadCmd),
    /// Manage nodes: let a TPM-bound node enroll another TPM or AK.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage registration entries (SPIFFE IDs granted to selectors).
    #[command(subcommand)]
    Entry(EntryCmd),
    /// Manage the verifier's result-signing keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Manage the SPIFFE trust domain's CA: show it, prepare the next one, activate it.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Revoke what must no longer be trusted.
    Revoke(RevokeCmd),
    /// The signed revocation log, from an epoch on.
    Revocations(RevocationsArgs),
    /// Fleet anomaly flags: measurements new to a workload group, fleet-wide changes, TPM
    /// counters, rate and latency outliers, nodes reporting another node's measurements.
    Anomalies(crate::commands::anomalies::AnomaliesArgs),
    /// The audit log: export it as JSON lines, check it (or one entry) offline.
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCmd),
    /// Confidential-computing evidence tools.
    #[command(subcommand)]
    Tee(TeeCmd),
    /// Quorum keys: FROST t-of-n key shares for quorum-signed results.
    #[command(subcommand)]
    Quorum(QuorumCmd),
    /// Relying-party tools: join the gossip cluster and keep a local revocation set.
    #[command(subcommand)]
    Rp(RpCmd),
    /// TPM tools for operators and debugging.
    #[command(subcommand)]
    Tpm(TpmCmd),
    /// Run a verifier on embedded SQLite and an agent attesting this machine.
    Dev(DevArgs),
    /// Measure attestations per second through the full HTTP path against the raw signature cost.
    Bench(BenchArgs),
    /// Check that a verifier (its /readyz) or an agent (its /healthz) is up: exit 0, or 1
    /// with the reason (for container HEALTHCHECKs and exec probes).
    Healthcheck(crate::commands::health::HealthcheckArgs),
    /// Secrets released only to attested workloads: store them with a policy (admin), or ask
    /// this machine's agent for one.
    #[command(subcommand)]
    Secret(crate::commands::secret::SecretCmd),
    /// Over-the-air updates checked against a TUF repository before they are applied, then
    /// re-attested; their digests published as reference values.
    #[command(subcommand)]
    Update(crate::commands::update::UpdateCmd),
    /// Chain of custody: a supply chain's in-toto links checked offline against a signed
    /// layout (every step signed by its functionaries, each step's materials the previous
    /// step's products).
    #[command(subcommand)]
    Custody(crate::commands::custody::CustodyCmd),
    /// SLSA provenance: an in-toto DSSE envelope checked offline against trusted keys, the
    /// artifact's digest, and the builder, source and build type required.
    #[command(subcommand)]
    Provenance(crate::commands::provenance::ProvenanceCmd),
    /// Container image signatures: cosign signatures in a registry verified with public keys.
    #[command(subcommand)]
    Image(crate::commands::image::ImageCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the vouch(1) man page, or write it and one page per subcommand into --dir.
    Man {
        /// Write vouch.1, vouch-server.1, vouch-entry-create.1, … into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// Whether this command runs a server, an agent or a gossip member: anything that holds
    /// sockets other processes can hang up on, so SIGPIPE must stay ignored.
    pub fn serves_sockets(&self) -> bool {
        matches!(
            self,
            Self::Server { .. }
                | Self::Agent { .. }
                | Self::Dev(_)
                | Self::Bench(_)
                | Self::Rp(RpCmd::Watch(_))
        )
    }
}

#[derive(Debug, Args)]
pub struct RevocationsArgs {
    /// Only records above this epoch.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    #[command(flatten)]
    pub api: AdminArgs,
}

#[derive(Debug, Subcommand)]
pub enum TeeCmd {
    /// Verify an SEV-SNP report, a TDX or SGX quote or a Nitro attestation document against
    /// the vendor roots (an offline store: nothing is fetched), print its claims, and with
    /// --policy appraise them as the verifier would.
    Verify {
        #[command(flatten)]
        input: TeeInput,
        /// Expected report data (hex): the 64 bytes the TEE must have bound.
        #[arg(long)]
        report_data: Option<String>,
        /// Appraise with this policy (`default` or a Rego file).
        #[arg(long)]
        policy: Option<String>,
        /// Reference values for the appraisal (JSON array of {kind, key, value}).
        #[arg(long)]
        refvalues: Option<PathBuf>,
    },
    /// Time the verification of one piece of evidence against the raw cost of its own
    /// signature checks (ECDSA verifies of the same kind), in one run.
    Bench {
        #[command(flatten)]
        input: TeeInput,
        /// Verifications to time.
        #[arg(long, default_value_t = 2000)]
        n: u32,
        /// Also time the default policy's appraisal of `composite` evidence (the whole and each
        /// component: three evaluations) against that of `tee` evidence alone, with this
        /// machine's real software measurements.
        #[arg(long)]
        composite: bool,
    },
}

/// The evidence to check and what to check it against.
#[derive(Debug, Args)]
pub struct TeeInput {
    /// sev-snp, tdx, sgx, nitro, or an Azure confidential VM's evidence: az-snp-vtpm,
    /// az-tdx-vtpm (Trustee's JSON: HCL report, vTPM quote, and the VCEK or TD quote).
    #[arg(long, value_parser = ["sev-snp", "tdx", "sgx", "nitro", "az-snp-vtpm", "az-tdx-vtpm"])]
    pub kind: String,
    /// The report, quote or document: raw bytes, base64 (standard or URL-safe), hex text,
    /// the configfs-tsm report as JSON (outblob/auxblob), or an SEV-SNP extended report
    /// (the report, then the certificate table).
    pub report: PathBuf,
    /// Certificates (PEM, DER, or an SEV-SNP certificate table): for sev-snp the VEK first,
    /// then the ASK/ASVK chain.
    #[arg(long = "cert")]
    pub certs: Vec<PathBuf>,
    /// Trusted vendor roots: a directory of .pem/.der files, or one file.
    #[arg(long)]
    pub roots: PathBuf,
    /// The offline store, filled ahead of time (nothing is fetched): DCAP collateral (.json,
    /// one per FMSPC) and SEV-SNP VCEKs and ASK/ASVKs (.der/.pem), so reports need no --cert.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, Unix seconds (default: now). Real samples verify only at times
    /// inside their certificates' windows.
    #[arg(long)]
    pub at: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum QuorumCmd {
    /// Trusted dealer (development): make the group key, split it into --signers shares of
    /// which any --threshold sign, write signer-<i>.json and group.json, forget the key.
    Dealer {
        /// Shares needed to sign.
        #[arg(long)]
        threshold: u16,
        /// Shares made (one per verifier).
        #[arg(long)]
        signers: u16,
        /// Directory to write to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Distributed key generation, no party ever holding the group key: every participant
    /// runs round1, then round2 once all round1-*.json files are in --dir, then finish once
    /// the round2-*-to-<id>.json files meant for it are there. round2 files are secret to
    /// their recipient: move them over a confidential channel.
    Dkg {
        /// round1, round2 or finish.
        #[arg(value_parser = ["round1", "round2", "finish"])]
        step: String,
        /// This participant's number, 1..=signers.
        #[arg(long)]
        id: u16,
        /// Shares needed to sign.
        #[arg(long)]
        threshold: u16,
        /// Participants.
        #[arg(long)]
        signers: u16,
        /// The ceremony directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RpCmd {
    /// Join the trust domain's gossip cluster as a relying party: check every revocation
    /// record and head that arrives against the trust bundle, keep the set in --state (read
    /// back at start, so checks keep working offline), and print one JSON line per change.
    Watch(RpWatchArgs),
}

#[derive(Debug, Args)]
pub struct RpWatchArgs {
    /// Trust-domain CA certificates (PEM).
    #[arg(long)]
    pub trust_bundle: PathBuf,
    /// The trust domain.
    #[arg(long, default_value = "vouch.local")]
    pub trust_domain: String,
    /// UDP address to gossip on.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// Address other members reach this one at (default: --listen).
    #[arg(long)]
    pub advertise: Option<std::net::SocketAddr>,
    /// A member to contact first (`host:port`); repeatable.
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// This member's name (default `rp-<listen address>`).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where to keep the revocation set.
    #[arg(long)]
    pub state: PathBuf,
    /// Milliseconds between gossip rounds.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// The cluster's gossip key (the verifiers' `[server.gossip] key_file`, 32+ secret
    /// bytes): datagrams are signed with it and those it does not verify are dropped.
    #[arg(
        long,
        env = "VOUCH_GOSSIP_KEY_FILE",
        required_unless_present = "insecure_gossip"
    )]
    pub gossip_key: Option<PathBuf>,
    /// Another key still accepted during a key rotation (never used to sign); repeatable.
    #[arg(long = "accept-gossip-key", requires = "gossip_key")]
    pub accept_gossip_keys: Vec<PathBuf>,
    /// Gossip without authentication: anyone who reaches the UDP port can stop revocations
    /// from arriving. Development only.
    #[arg(long, conflicts_with = "gossip_key")]
    pub insecure_gossip: bool,
}

/// Which signatures of a result `vouch verify` requires.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SignaturesArg {
    /// The classical signature (EdDSA/ES256).
    Classical,
    /// The ML-DSA-65 signature of `result_pq` / `result.pq.json`.
    PostQuantum,
    /// Both.
    Both,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token, a file holding it, or - for standard input: a compact JWT (`result.jwt`)
    /// or the JWS JSON with the ML-DSA-65 signature too (`result.pq.json`).
    pub token: String,
    /// Which signatures must verify: the post-quantum modes refuse a result without a valid
    /// ML-DSA-65 signature (from the JWKS's AKP key).
    #[arg(long, value_enum, default_value = "classical")]
    pub signatures: SignaturesArg,
    /// JWKS: a file, or an https:// URL (fetched once).
    #[arg(long, required_unless_present = "trust_bundle")]
    pub jwks: Option<String>,
    /// Accept results whose signer certificate (x5c) chains to these trust-domain CA
    /// certificates (PEM), instead of or as well as a JWKS.
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// The trust domain of --trust-bundle.
    #[arg(long, default_value = "vouch.local")]
    pub trust_domain: String,
    /// Refuse results revoked in this revocation set: a file (saved by `vouch rp watch
    /// --state`, or a `GET /v1/revocations` answer saved as is), checked with no network, or
    /// the verifier's feed URL (`https://…/v1/revocations`, every page fetched, --ca-cert for
    /// its TLS); needs --trust-bundle.
    #[arg(long, requires = "trust_bundle")]
    pub revocations: Option<String>,
    /// With --revocations: refuse when the set's newest signed head is older than this
    /// (seconds, or 90s, 10m, 1h), or when the set lacks a record the head announces.
    #[arg(long, default_value = "5m", requires = "revocations")]
    pub max_revocation_age: String,
    /// CA certificate for fetching the JWKS over HTTPS.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The audience the result must be for: this relying party's name, which its clients'
    /// agents request with --result-audience. Required, unless --any-audience.
    #[arg(long, required_unless_present = "any_audience")]
    pub audience: Option<String>,
    /// Do not check the result's audience: to inspect a result, never where it grants access.
    #[arg(long, conflicts_with = "audience")]
    pub any_audience: bool,
    /// Required nonce.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Accept `warning` results.
    #[arg(long)]
    pub accept_warning: bool,
    /// Required tier of a trust-vector claim, e.g. hardware=affirming; repeatable.
    #[arg(long = "require")]
    pub require: Vec<String>,
    /// A submodule the result must have, e.g. sev-snp (with tpm: a confidential VM attested
    /// with its vTPM); repeatable.
    #[arg(long = "require-submod")]
    pub require_submods: Vec<String>,
    /// An accepted evidence kind (tpm, tee, composite, software); repeatable; default any.
    #[arg(long = "evidence-kind")]
    pub evidence_kinds: Vec<String>,
    /// The verifier tenant the result must name (its `vouch.tenant`); default any.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Add a new version of a policy (activates it unless --no-activate).
    Add {
        /// Policy id.
        id: String,
        /// Rego file.
        file: PathBuf,
        /// Keep the currently active policy.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List policies (latest version of each).
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Print a policy.
    Show {
        /// Policy id.
        id: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List every version of a policy.
    Versions {
        /// Policy id.
        id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Make a policy the active one.
    Activate {
        /// Policy id.
        id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Evaluate a policy offline and explain which rule decided and why.
    Test {
        /// Rego file, or `default` for the shipped default policy.
        policy: String,
        /// Claims JSON (the policy input).
        #[arg(long)]
        input: PathBuf,
        /// Reference values JSON file: [{"kind", "key", "value"}, …].
        #[arg(long)]
        refvalues: Option<PathBuf>,
        /// Also use the verifier's reference values (fetched through its API).
        #[arg(long, alias = "from-store")]
        from_server: bool,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RefvalueCmd {
    /// Add a reference value.
    Add {
        /// Kind (executable, file, min_os_version, min_package, forbidden_process, …).
        kind: String,
        /// Key within the kind (workload name, path, package, …).
        key: String,
        /// Value.
        value: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List reference values.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Remove a reference value by id.
    Remove {
        /// Id from `vouch refvalue list`.
        id: i64,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Import many reference values in one request and one transaction: a JSON array of
    /// {"kind", "key", "value"}, or CSV with the columns kind,key,value (an optional header
    /// row; fields quoted as in RFC 4180). One bad row refuses the whole import, naming it.
    Import {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// json or csv (default: from the file name, else from its first byte).
        #[arg(long, value_parser = ["json", "csv"])]
        format: Option<String>,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Print the reference values a node's latest measurements would need (each workload's
    /// executable and measured files), as JSON for review; --apply imports them.
    Learn {
        /// Node id (see `vouch node list`).
        node: String,
        /// Import them (one transaction) instead of only printing them.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        api: AdminArgs,
    },
}

/// `vouch api-token`: a tenant's scoped API tokens (its admin's business).
#[derive(Debug, Subcommand)]
pub enum ApiTokenCmd {
    /// Mint a token for the tenant (--tenant) with a role; it is printed once, and only its
    /// SHA-256 is kept by the verifier.
    Create {
        /// Who holds it (the audit log's actor): 1-64 of A-Z a-z 0-9 . _ @ -.
        #[arg(long)]
        name: String,
        /// auditor (read-only), operator (entries, join tokens, revocations, re-enrolment)
        /// or admin (everything in the tenant).
        #[arg(long, value_parser = ["auditor", "operator", "admin"])]
        role: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List the tenant's tokens: names, roles, when minted.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Revoke a token by name (refused at once).
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// List the newest join tokens: unused, used (by which node) or expired. Only their
    /// SHA-256 is kept, so the tokens themselves cannot be shown.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Create a one-time join token.
    Create {
        /// Lifetime, e.g. 600, 10m, 1h, 1d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Name to give the node that uses it.
        #[arg(long)]
        node_name: Option<String>,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCmd {
    /// List workloads and their status.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Show a workload (NODE/NAME) and its latest appraisal.
    Show {
        /// Workload id.
        id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List enrolled nodes.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Show a node: how it was attested, its TPM binding, re-enrolments, workloads, revocation.
    Show {
        /// Node id.
        node_id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Let a TPM-bound node enroll another TPM (EK) or AK. Once a node's AK is activated, its
    /// agent can enroll only the same EK and AK again; this opens one re-enrolment, used by the
    /// next credential activation or closed after --ttl, and recorded with who and why.
    Reenroll {
        /// Node id.
        node_id: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        /// Who decides (default: $USER@hostname).
        #[arg(long)]
        by: Option<String>,
        /// How long it stays open: 600, 10m, 1h, 1d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// The active result-signing key and the JWKS (with keys still in their grace period).
    Show {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Create a new result-signing key and retire the current one (it stays in the JWKS for
    /// the grace period, so results it signed still verify). The verifier that makes it signs
    /// with it at once; other replicas sharing its key directory pick it up.
    Rotate {
        /// Algorithm of the new key.
        #[arg(long, value_parser = ["EdDSA", "ES256"], default_value = "EdDSA")]
        alg: String,
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct RevokeCmd {
    /// What to revoke: `node` (its agent keys stop working at once and its workloads turn
    /// contraindicated), `workload` (`node-id/name`: no new results, relying parties refuse
    /// its results), `agent-key` (one key id), `svid` (a certificate serial in hex: a
    /// workload's SVID, or a verifier replica's signing certificate, which revokes that
    /// replica's key alone), `result` (one attestation id).
    #[arg(value_parser = parse_revocation_kind)]
    pub kind: vouch_core::revocation::RevocationKind,
    /// Which one.
    pub id: String,
    /// Why, for the record (signed into it).
    #[arg(long)]
    pub reason: String,
    /// Who decides (default: $USER@hostname).
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub api: AdminArgs,
}

fn parse_revocation_kind(s: &str) -> Result<vouch_core::revocation::RevocationKind, String> {
    vouch_core::revocation::RevocationKind::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of workload, node, svid, agent-key, result"))
}

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// The authorities in the trust bundle and the bundle's sequence number.
    Show {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Create the next CA and publish it in the bundle; it signs nothing until activated.
    /// (A running verifier also does this by itself at half the CA's lifetime.)
    Prepare {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Make the prepared CA the signing one; the old one stays in the bundle until the SVIDs
    /// it signed expire. A running verifier picks the change up at its next request.
    Activate {
        #[command(flatten)]
        api: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Attest once, print the result and exit (0 when affirming).
    #[arg(long)]
    pub once: bool,
    /// State directory.
    #[arg(long, default_value = ".vouch/dev")]
    pub dir: PathBuf,
    /// Address for the verifier (default 127.0.0.1:8443; an ephemeral port with --once).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Extra files to measure.
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
    /// Seconds between attestations.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
}

/// `vouch bench`: with no mode flag, every row of the performance table (each figure against
/// its ceiling measured in the same run, the ratio, the target, whether it is met).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A benchmark with its own flags.
    #[command(subcommand)]
    pub command: Option<BenchCmd>,
    /// Attestations to run (per attestation row; the micro-benchmarks run more).
    #[arg(long, default_value_t = 500)]
    pub n: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Registered workloads and entries for the table's scale rows (memory per workload, cost
    /// against 1,000, an entry change reaching up to 1,000 watching agents); 0 leaves them out.
    /// `vouch bench scale` has every scale measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_workloads: usize,
    /// Measure X.509-SVID issuance (certificates built and signed by the trust-domain CA)
    /// against raw ECDSA P-256 signing, instead of attestations.
    #[arg(long)]
    pub svid: bool,
    /// Run the verifiers on this PostgreSQL instead of a temporary SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Verifier replicas (in this process) sharing the store; clients are spread over them.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Measure how fast a revocation spreads by gossip through clusters of these sizes
    /// (simulated in this process), instead of attestations.
    #[arg(long, value_delimiter = ',')]
    pub gossip: Vec<usize>,
    /// Measure the signing work of a 2-of-3 quorum result (FROST commit, sign, aggregate)
    /// against one Ed25519 signature, instead of attestations.
    #[arg(long)]
    pub quorum: bool,
    /// Measure the post-quantum signature of a result (ML-DSA-65 sign + verify) against
    /// Ed25519 sign + verify, instead of attestations.
    #[arg(long)]
    pub pq: bool,
    /// Measure the fleet anomaly detector's work per attestation against the appraisal
    /// pipeline's, over this machine's measurements, instead of attestations.
    #[arg(long)]
    pub anomalies: bool,
    /// Measure a page of the public revocation feed (`--n` records, at most 1,000, each
    /// co-signed with ML-DSA-65) asked for the first time and again, against the raw signatures
    /// a page costs, instead of attestations.
    #[arg(long)]
    pub feed: bool,
    /// With --gossip: percent of the members cut off during the spread (they catch up after).
    #[arg(long, default_value_t = 0)]
    pub down_percent: usize,
    /// With --gossip: milliseconds between gossip rounds.
    #[arg(long, default_value_t = 200)]
    pub gossip_interval_ms: u64,
    /// Leave out the TPM row even when swtpm is installed.
    #[arg(long)]
    pub no_tpm: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Simulate a fleet of agents, each on its own keep-alive HTTPS connection, attesting at
    /// an interval with jitter (some with changed claims), against verifiers started in this
    /// process or running elsewhere (--target); print an HDR latency histogram at the end.
    Load(LoadArgs),
    /// Fill a temporary store with N workloads and N registration entries and measure the
    /// verifier at that scale against a small store (issue 13 item 5): memory per workload,
    /// start-up, attestation and SVID cost, an entry change reaching watching agents, and an
    /// agent's incremental entry sync.
    Scale(ScaleArgs),
}

/// `vouch bench scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Workloads (and filler registration entries) in the large store.
    #[arg(long, default_value_t = 1_000_000)]
    pub workloads: usize,
    /// Workloads (and entries) in the store it is compared with.
    #[arg(long, default_value_t = 1_000)]
    pub baseline: usize,
    /// Agents holding an entry watch open when an entry changes.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// Registration entries of the measured agent's node (synced in full, then incrementally).
    #[arg(long, default_value_t = 10_000)]
    pub agent_entries: usize,
    /// Attestations and SVID requests timed at each size.
    #[arg(long, default_value_t = 200)]
    pub n: usize,
}

/// `vouch bench load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Simulated agents (each enrolls its own key and holds its own connection).
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Time between one agent's attestations, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// Jitter on each interval, percent either way.
    #[arg(long, default_value_t = 20)]
    pub jitter_percent: u8,
    /// How long to attest after enrollment, e.g. 60s or 5m.
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// Percent of attestations whose claims change (a process appears or goes); the rest
    /// repeat the agent's previous claims with a new nonce.
    #[arg(long, default_value_t = 10)]
    pub changed_percent: u8,
    /// Verifier replicas started in this process (several need --database-url).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// The verifiers' PostgreSQL (in-process replicas), or the store join tokens are made in
    /// for --target.
    #[arg(long)]
    pub database_url: Option<String>,
    /// A running verifier to load instead of in-process replicas; repeat for several (agents
    /// are spread over them).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// With --target: the CA certificate (PEM) the verifiers' TLS chains to.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// With --target on SQLite: the verifier's data directory, to make join tokens in its store.
    #[arg(long)]
    pub server_data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TpmCmd {
    /// Verify a quote made by tpm2_quote (tpm2-tools file formats), checking every field.
    VerifyQuote {
        /// AK public area (TPM2B_PUBLIC, `tpm2_createak -u`), or a PEM/DER SubjectPublicKeyInfo.
        #[arg(long)]
        ak: PathBuf,
        /// EK public area (`tpm2_createek -u`): the AK's parent, needed to check qualifiedSigner.
        #[arg(long)]
        ek: Option<PathBuf>,
        /// The quoted TPMS_ATTEST (`tpm2_quote -m`).
        #[arg(long)]
        message: PathBuf,
        /// The TPMT_SIGNATURE (`tpm2_quote -s`).
        #[arg(long)]
        signature: PathBuf,
        /// The PCR values (`tpm2_quote -o`).
        #[arg(long)]
        pcrs: PathBuf,
        /// The qualifying data given to `tpm2_quote -q`, hex.
        #[arg(long)]
        nonce: String,
        /// Also accept SHA-1 (signatures and PCR banks). Off: SHA-1 is a downgrade.
        #[arg(long)]
        allow_sha1: bool,
    },
    /// Parse and replay a firmware event log (`binary_bios_measurements`): every event, the
    /// PCR values it replays to, and the boot claims. With `--pcrs`, check the replay against
    /// quoted PCR values (`tpm2_quote -o` / `tpm2_pcrread -o` format); exit 1 on a mismatch.
    Eventlog {
        /// The binary event log.
        file: PathBuf,
        /// PCR values to check the replay against.
        #[arg(long)]
        pcrs: Option<PathBuf>,
    },
    /// Measure quote verification against the raw signature check, in one run.
    Bench {
        /// A real quote in Trustee's evidence format (RSA), e.g. the repository's
        /// testdata/tpm/trustee_tpm_evidence.json.
        #[arg(long)]
        evidence: PathBuf,
        /// Also make RSA and ECC quotes on this TPM (e.g. swtpm:host=127.0.0.1,port=2321).
        #[arg(long)]
        tcti: Option<String>,
        /// Iterations per measurement.
        #[arg(long, default_value_t = 2000)]
        n: u32,
        /// Also time a firmware event log (parse, replay in every bank, check, claims) against
        /// the same run's RSA signature check, e.g. the repository's
        /// crates/vouch-tpm/tests/data/ovmf_binary_bios_measurements.
        #[arg(long)]
        eventlog: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EntryCmd {
    /// Grant a SPIFFE ID to workloads carrying all the given selectors.
    Create {
        /// The SPIFFE ID, e.g. spiffe://example.org/ns/prod/sa/db.
        #[arg(long)]
        spiffe_id: String,
        /// A selector (type:value), e.g. unix:uid:1000, unix:sha256:<hex>,
        /// vouch:status:affirming; repeat for more (all must match).
        #[arg(long = "selector", required = true)]
        selectors: Vec<String>,
        /// SVID lifetime, e.g. 1h.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List entries.
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Show one entry.
    Show {
        /// Entry id.
        id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Delete an entry.
    Delete {
        /// Entry id.
        id: String,
        #[command(flatten)]
        api: AdminArgs,
    },
}
