//! Configuration: defaults, then the TOML file, then `VOUCH_<SECTION>_<FIELD>` environment
//! variables, then command-line flags (applied by each command).

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

use vouch_agent::AgentConfig;
use vouch_server::ServerConfig;

/// The whole file: `[server]` and `[agent]`.
#[derive(Debug, Default)]
pub struct FileConfig {
    pub server: ServerConfig,
    pub agent: AgentConfig,
}

/// Load `path` (if given) and apply the environment.
pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config file {}", p.display()))?;
            let v: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            for k in v.keys() {
                if k != "server" && k != "agent" {
                    bail!(
                        "{}: unknown section [{k}] (expected [server] or [agent])",
                        p.display()
                    );
                }
            }
            serde_json::to_value(v)?
        }
        None => Value::Object(Default::default()),
    };
    let server = section::<ServerConfig>(&mut table, "server", std::env::vars())?;
    let agent = section::<AgentConfig>(&mut table, "agent", std::env::vars())?;
    Ok(FileConfig { server, agent })
}

/// Merge one section: defaults ← file ← `VOUCH_<SECTION>_<FIELD>`.
fn section<T: Serialize + DeserializeOwned + Default>(
    table: &mut Value,
    name: &str,
    env: impl Iterator<Item = (String, String)>,
) -> Result<T> {
    let mut merged = serde_json::to_value(T::default())?;
    let defaults = merged.clone();
    if let (Some(m), Some(file)) = (
        merged.as_object_mut(),
        table.get(name).and_then(Value::as_object),
    ) {
        for (k, v) in file {
            m.insert(k.clone(), v.clone());
        }
    }
    let prefix = format!("VOUCH_{}_", name.to_ascii_uppercase());
    let Some(m) = merged.as_object_mut() else {
        bail!("internal: section {name} is not an object");
    };
    for (k, raw) in env {
        let Some(field) = k.strip_prefix(&prefix) else {
            continue;
        };
        let field = field.to_ascii_lowercase();
        let Some(default) = defaults.get(&field) else {
            // DATA_DIR for the admin commands is read by clap; other unknowns are mistakes.
            if field != "data_dir" {
                tracing::warn!("ignoring {k}: {name} has no setting {field}");
            }
            continue;
        };
        let v = match default {
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            ),
            Value::Bool(_) => Value::Bool(
                raw.parse()
                    .with_context(|| format!("{k} must be true or false"))?,
            ),
            Value::Number(_) => Value::Number(
                raw.parse::<u64>()
                    .with_context(|| format!("{k} must be a whole number"))?
                    .into(),
            ),
            _ => Value::String(raw),
        };
        m.insert(field, v);
    }
    serde_json::from_value(merged).with_context(|| format!("invalid [{name}] configuration"))
}

/// Parse a duration such as `600`, `10m`, `1h`, `2d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration (examples: 600, 10m, 1h, 2d)"))?;
    Ok(n.saturating_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        let mut t = serde_json::json!({"server": {"audience": "from-file", "nonce_ttl": 30}});
        let env = vec![
            ("VOUCH_SERVER_NONCE_TTL".to_string(), "45".to_string()),
            ("VOUCH_SERVER_INSECURE_HTTP".to_string(), "true".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let s: ServerConfig = section(&mut t, "server", env.into_iter()).unwrap();
        assert_eq!(s.audience, "from-file");
        assert_eq!(s.nonce_ttl, 45);
        assert!(s.insecure_http);
        assert_eq!(s.result_ttl, ServerConfig::default().result_ttl);

        let env = vec![(
            "VOUCH_AGENT_SERVERS".to_string(),
            "https://a:1,https://b:2".to_string(),
        )];
        let a: AgentConfig = section(&mut t, "agent", env.into_iter()).unwrap();
        assert_eq!(a.servers, vec!["https://a:1", "https://b:2"]);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let mut t = serde_json::json!({});
        let env = vec![("VOUCH_SERVER_NONCE_TTL".to_string(), "soon".to_string())];
        let e = section::<ServerConfig>(&mut t, "server", env.into_iter()).unwrap_err();
        assert!(format!("{e:#}").contains("VOUCH_SERVER_NONCE_TTL"));
        let mut t = serde_json::json!({"server": {"nonce_tll": 3}});
        let e = section::<ServerConfig>(&mut t, "server", std::iter::empty()).unwrap_err();
        assert!(format!("{e:#}").contains("nonce_tll"), "{e:#}");
    }

    #[test]
    fn the_tee_section_of_the_agent() {
        let mut t = serde_json::json!({"agent": {"tee": {"privlevel": 1}}});
        let a: AgentConfig = section(&mut t, "agent", std::iter::empty()).unwrap();
        let tee = a.tee.unwrap();
        assert_eq!(tee.privlevel, Some(1));
        assert_eq!(
            tee.configfs,
            std::path::Path::new("/sys/kernel/config/tsm/report")
        );
        let mut t = serde_json::json!({"agent": {"tee": {"configfs": "/x", "level": 1}}});
        let e = section::<AgentConfig>(&mut t, "agent", std::iter::empty()).unwrap_err();
        assert!(format!("{e:#}").contains("level"), "{e:#}");
    }

    #[test]
    fn the_container_section_of_the_agent_and_its_example() {
        let mut t = serde_json::json!({"agent": {"container": {"timeout_ms": 500}}});
        let a: AgentConfig = section(&mut t, "agent", std::iter::empty()).unwrap();
        let c = a.container.unwrap();
        assert_eq!(c.timeout_ms, 500);
        assert_eq!(c.socket, std::path::Path::new("/run/podman/podman.sock"));
        let mut t = serde_json::json!({"agent": {"container": {"sock": "/x"}}});
        let e = section::<AgentConfig>(&mut t, "agent", std::iter::empty()).unwrap_err();
        assert!(format!("{e:#}").contains("sock"), "{e:#}");
        assert!(AgentConfig::default().container.is_none());
        // vouch.example.toml's commented [agent.container], uncommented, is the defaults.
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vouch.example.toml"),
        )
        .unwrap();
        let block: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [agent.container]"))
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let t: toml::Table = toml::from_str(&block).unwrap();
        let mut t = serde_json::to_value(t).unwrap();
        let a: AgentConfig = section(&mut t, "agent", std::iter::empty()).unwrap();
        assert_eq!(a.container, Some(vouch_agent::ContainerConfig::default()));
    }

    #[test]
    fn the_node_attestation_and_workloads_blocks_of_the_example_load() {
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vouch.example.toml"),
        )
        .unwrap();
        let block = |start: &str| -> String {
            example
                .lines()
                .skip_while(|l| !l.starts_with(start))
                .take_while(|l| l.starts_with('#') && !l.starts_with("# tee_roots_dir"))
                .filter_map(|l| l.strip_prefix("# "))
                .filter(|l| !l.starts_with(' '))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        // The agent's: both blocks, uncommented, are one valid [agent] section.
        let t: toml::Table = toml::from_str(&block("# [agent.node_attestation]")).unwrap();
        let mut t = serde_json::to_value(t).unwrap();
        let a: AgentConfig = section(&mut t, "agent", std::iter::empty()).unwrap();
        let n = a.node_attestation.unwrap();
        assert_eq!(n.method, "k8s_psat");
        assert!(n.data_file.is_some() && n.url.is_none());
        assert_eq!(a.workloads.len(), 1);
        assert_eq!(a.workloads[0].selectors, ["unix:path:/usr/sbin/nginx"]);
        // The server's: each document method's table names only its settings' fields.
        let t: toml::Table = toml::from_str(&block("# [server.node_attestor.k8s_psat]")).unwrap();
        let t = serde_json::to_value(t).unwrap();
        for m in ["k8s_psat", "aws_iid", "gcp_iit", "azure_imds"] {
            let settings = &t["server"]["node_attestor"][m];
            assert!(settings.is_object(), "{m} in the example");
            // Built: only the files it names are missing (no unknown or mistyped field).
            let e = vouch_nodeattest::from_config(m, settings)
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("unknown field") && !e.contains("invalid type"),
                "{m}: {e}"
            );
        }
    }

    #[test]
    fn the_image_signatures_block_of_the_example_loads() {
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vouch.example.toml"),
        )
        .unwrap();
        let block: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [server.image_signatures]"))
            .take_while(|l| l.starts_with('#') && !l.starts_with("# [[server.tenants]]"))
            .filter_map(|l| l.strip_prefix("# "))
            .map(|l| format!("{l}\n"))
            .collect();
        let t: toml::Table = toml::from_str(&block).unwrap();
        let mut t = serde_json::to_value(t).unwrap();
        let s: vouch_server::ServerConfig = section(&mut t, "server", std::iter::empty()).unwrap();
        let i = s.image_signatures.unwrap();
        assert_eq!(i.repositories, ["registry.example/shop/web"]);
        assert_eq!(i.ttl, 300);
        assert!(!i.plain_http);
        // Key-less signers, registry login and mirrors.
        assert!(i.trusted_root.is_some() && i.auth_file.is_some());
        assert_eq!(
            i.identities[0].issuer,
            "https://token.actions.githubusercontent.com"
        );
        assert_eq!(
            i.remap_identity,
            ["mirror.local/shop=registry.example/shop"]
        );
        // [server.admission], the block after it.
        let a = s.admission.unwrap();
        assert!(a.client_ca.is_some() && a.token_file.is_some());
        assert!(a.require_attested_node && a.require_provenance);
        assert_eq!(a.cluster.as_deref(), Some("prod"));
        assert_eq!(a.provenance_builders.len(), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").unwrap(), 600);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("soon").is_err());
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_config_loads_and_matches_the_defaults() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vouch.example.toml");
        let c = super::load(Some(&p)).unwrap();
        let d = vouch_server::ServerConfig::default();
        assert_eq!(c.server.listen, d.listen);
        assert_eq!(c.server.nonce_ttl, d.nonce_ttl);
        assert_eq!(c.server.node_attestors, d.node_attestors);
        assert_eq!(c.server.body_limit, d.body_limit);
        assert_eq!(
            (
                c.server.max_entry_watchers,
                c.server.max_entry_watchers_per_key,
                c.server.entries_watch_timeout
            ),
            (
                d.max_entry_watchers,
                d.max_entry_watchers_per_key,
                d.entries_watch_timeout
            )
        );
        assert_eq!(
            c.agent.interval,
            vouch_agent::AgentConfig::default().interval
        );
    }
}
