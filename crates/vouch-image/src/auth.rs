//! Registry authentication: credentials from a Docker `config.json` / containers `auth.json`,
//! `WWW-Authenticate` challenges, and the rules on where credentials may go.
//!
//! The Docker token flow: a registry answers 401 with `WWW-Authenticate: Bearer
//! realm="<token endpoint>",service="...",scope="..."`; the client asks the realm for a token
//! (with Basic credentials when it has some for the registry) and repeats the request with
//! `Authorization: Bearer <token>`. A registry answering `Basic realm="..."` gets the
//! credentials directly. Credentials are never sent over plain HTTP except to a loopback
//! address, and a realm may not downgrade an HTTPS registry to plain HTTP.

use base64::Engine as _;
use std::collections::BTreeMap;

use crate::ImageError;

/// Longest credentials file read.
pub const MAX_AUTH_FILE_BYTES: usize = 1 << 20;
/// Longest `WWW-Authenticate` header parsed.
pub const MAX_CHALLENGE_BYTES: usize = 4096;

/// Registry credentials, by registry `host[:port]`.
#[derive(Clone, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Registries and users, never passwords.
        f.debug_map()
            .entries(self.by_registry.iter().map(|(r, (u, _))| (r, u)))
            .finish()
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `Host:5000` → `host:5000`.
fn registry_key(s: &str) -> String {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or("").to_ascii_lowercase()
}

impl Credentials {
    /// Use `user` and `password` for `registry` (`host[:port]`).
    pub fn insert(&mut self, registry: &str, user: &str, password: &str) {
        self.by_registry.insert(
            registry_key(registry),
            (user.to_string(), password.to_string()),
        );
    }

    /// The credentials for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<(&str, &str)> {
        self.by_registry
            .get(&registry_key(registry))
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Whether no registry has credentials.
    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }

    /// Read the `auths` of a Docker `config.json` or a containers `auth.json`: each entry's
    /// `auth` (base64 `user:password`) or `username` and `password`. Entries with neither
    /// (credential helpers, identity tokens) are skipped.
    pub fn from_docker_config(bytes: &[u8]) -> Result<Self, ImageError> {
        let bad = |m: String| ImageError::Key(format!("credentials file: {m}"));
        if bytes.len() > MAX_AUTH_FILE_BYTES {
            return Err(bad(format!("longer than {MAX_AUTH_FILE_BYTES} bytes")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let mut out = Self::default();
        let Some(auths) = v.get("auths") else {
            return Ok(out);
        };
        let auths = auths
            .as_object()
            .ok_or_else(|| bad("auths is not an object".into()))?;
        for (registry, entry) in auths.iter().take(1024) {
            if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| bad(format!("{registry}: auth is not base64: {e}")))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| bad(format!("{registry}: auth is not UTF-8")))?;
                let (user, password) = text
                    .split_once(':')
                    .ok_or_else(|| bad(format!("{registry}: auth is not user:password")))?;
                out.insert(registry, user, password);
            } else if let (Some(u), Some(p)) =
                (entry["username"].as_str(), entry["password"].as_str())
            {
                out.insert(registry, u, p);
            }
        }
        Ok(out)
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=...,service=...,scope=...`: get a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// `service`, passed back to the realm.
        service: Option<String>,
        /// `scope`, passed back to the realm.
        scope: Option<String>,
    },
    /// `Basic realm=...`: send the credentials.
    Basic,
}

/// Parse a `WWW-Authenticate` header value (one challenge, RFC 9110 auth-params with quoted
/// or token values), from untrusted bytes.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    if header.len() > MAX_CHALLENGE_BYTES {
        return Err("WWW-Authenticate longer than allowed".into());
    }
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (name, after) = s
            .split_once('=')
            .ok_or_else(|| format!("auth-param without '=' in {header:?}"))?;
        let name = name.trim().to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("unterminated quoted string in {header:?}"))?;
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(name, value);
        s = after.trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
        if params.len() > 16 {
            return Err("more than 16 auth-params".into());
        }
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Challenge::Bearer {
            realm: params
                .remove("realm")
                .ok_or("Bearer challenge without a realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        "basic" => Ok(Challenge::Basic),
        other => Err(format!("unsupported authentication scheme {other:?}")),
    }
}

/// Whether credentials may be sent to `url`: over HTTPS, or over plain HTTP to a loopback
/// address only.
pub fn may_send_credentials(url: &reqwest::Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "refusing to send credentials over plain HTTP to {}",
            url.host_str().unwrap_or("?")
        )),
        other => Err(format!("refusing to send credentials over {other:?}")),
    }
}

/// Whether `url`'s host is a loopback address (or `localhost`).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(a) => a.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_as_registries_send_them() {
        // Docker Hub's and distribution's shapes.
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Ok(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Ok(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=https://r/t, service="a\"b""#),
            Ok(Challenge::Bearer {
                realm: "https://r/t".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert!(parse_challenge("Bearer service=\"x\"").is_err());
        assert!(parse_challenge("Bearer realm=\"x").is_err());
        assert!(parse_challenge("Negotiate abc").is_err());
    }

    #[test]
    fn credentials_go_over_https_or_to_loopback_only() {
        let ok = |u: &str| may_send_credentials(&reqwest::Url::parse(u).unwrap());
        assert!(ok("https://registry.example/v2/").is_ok());
        assert!(ok("http://127.0.0.1:5000/v2/").is_ok());
        assert!(ok("http://[::1]:5000/v2/").is_ok());
        assert!(ok("http://localhost/v2/").is_ok());
        assert!(ok("http://registry.example/v2/").is_err());
        assert!(ok("http://10.0.0.1:5000/v2/").is_err());
        assert!(ok("http://127.0.0.1.example/v2/").is_err());
        assert!(ok("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn docker_config_auths() {
        let c = Credentials::from_docker_config(
            br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
                 "Reg.Example:5000":{"username":"u2","password":"p2"},
                 "helper.example":{}},"credsStore":"desktop"}"#,
        )
        .unwrap();
        assert_eq!(c.get("index.docker.io"), Some(("user", "pa:ss")));
        assert_eq!(c.get("reg.example:5000"), Some(("u2", "p2")));
        assert_eq!(c.get("helper.example"), None);
        assert!(!format!("{c:?}").contains("pa:ss"));
        assert!(Credentials::from_docker_config(br#"{"auths":{"r":{"auth":"!!"}}}"#).is_err());
        assert!(
            Credentials::from_docker_config(br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#).is_err()
        );
    }
}
