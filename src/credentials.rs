//! Secrets: read by name from systemd credentials (`$CREDENTIALS_DIRECTORY/roadsight_<name>`,
//! see systemd/README.md, or `$CREDENTIALS_DIRECTORY/<name>`) or, for
//! development, from the configured `capture.credentials_dir`. A [`Secret`] never prints its
//! value, and [`redact_url`] strips passwords from URLs before they reach a log line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a credential could not be read. Never holds the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credential `{name}`: no $CREDENTIALS_DIRECTORY and no credentials_dir configured")]
    NoDirectory { name: String },
    #[error("credential `{name}`: cannot read {path}: {source}")]
    Unreadable { name: String, path: PathBuf, source: std::io::Error },
    #[error("credential `{name}`: expected {expected}")]
    Malformed { name: String, expected: &'static str },
}

/// A secret value; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Prefix systemd gives the credentials loaded from a directory: the unit's
/// `LoadCredential=roadsight:/etc/credstore/roadsight` turns file `north` into `roadsight_north`.
const UNIT_PREFIX: &str = "roadsight_";

/// Reads credential `name`: from `$CREDENTIALS_DIRECTORY` as `roadsight_<name>` (loaded from
/// the unit's credential directory) or `<name>` (a `LoadCredential=<name>:…` of its own), else
/// from `fallback_dir/<name>`. The value is the file's content with one trailing newline removed.
pub fn read(name: &str, fallback_dir: Option<&Path>) -> Result<Secret, CredentialError> {
    let path = match std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) {
        Some(dir) => {
            let prefixed = dir.join(format!("{UNIT_PREFIX}{name}"));
            if prefixed.exists() { prefixed } else { dir.join(name) }
        }
        None => fallback_dir
            .ok_or_else(|| CredentialError::NoDirectory { name: name.to_owned() })?
            .join(name),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| CredentialError::Unreadable { name: name.to_owned(), path, source })?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Secret(value.strip_suffix('\r').unwrap_or(value).to_owned()))
}

/// Reads a `user:password` credential.
pub fn read_user_password(name: &str, fallback_dir: Option<&Path>) -> Result<(String, Secret), CredentialError> {
    let secret = read(name, fallback_dir)?;
    match secret.0.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_owned(), Secret(pass.to_owned()))),
        _ => Err(CredentialError::Malformed { name: name.to_owned(), expected: "`user:password` on one line" }),
    }
}

/// Query parameters some cameras take credentials in (`?user=admin&password=…`).
const SECRET_QUERY_KEYS: [&str; 8] = ["password", "passwd", "pass", "pwd", "token", "secret", "key", "auth"];

/// The URL with any password (user info, or a secret-looking query parameter) replaced by
/// `***`, for logs and `check` output.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            let secret = |k: &str| SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
            if parsed.query_pairs().any(|(k, _)| secret(&k)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret(&k) { "***".to_owned() } else { v.into_owned() };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Unparseable: keep the scheme and host part only if there is no user info.
        Err(_) if url.contains('@') => "<url with credentials, unparseable>".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// Redacts the password of every `scheme://user:password@` inside free text, such as a config
/// line that a TOML syntax error quotes back. The user info runs to the last `@` before a space
/// or a quote, so a password holding `/` or `@` is redacted whole (a path holding `@` after a
/// port may be redacted too: more than needed, never less).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@').map(|at| authority.split_at(at)) {
            Some((userinfo, host)) => {
                out.push_str(userinfo.split_once(':').map_or(userinfo, |(user, _)| user));
                if userinfo.contains(':') {
                    out.push_str(":***");
                }
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn redacts_passwords_in_free_text() {
        let quoted = "2 | url = \"rtsp://admin:hunter2@10.0.0.1/s\n  |   ^ invalid basic string";
        assert_eq!(redact_text(quoted), "2 | url = \"rtsp://admin:***@10.0.0.1/s\n  |   ^ invalid basic string");
        assert_eq!(redact_text("a redis://u:p@h:1 and rtsp://cam/x"), "a redis://u:***@h:1 and rtsp://cam/x");
        assert_eq!(redact_text("rtsp://user@host/ no://"), "rtsp://user@host/ no://");
        assert_eq!(redact_text("url = \"rtsp://a:pa/ss@h/s"), "url = \"rtsp://a:***@h/s");
        assert_eq!(redact_text("rtsp://a:p@ss@h/s"), "rtsp://a:***@h/s");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("rtsp://admin:hunter2@10.0.0.1/s"), "rtsp://admin:***@10.0.0.1/s");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redact_url("rtsp://a:hunter2@[bad").contains("hunter2"));
        let q = redact_url("rtsp://10.0.0.1/live?channel=1&user=admin&Password=hunter2");
        assert_eq!(q, "rtsp://10.0.0.1/live?channel=1&user=admin&Password=***");
    }

    #[test]
    fn reads_user_password_from_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("north"), "viewer:s3cr:et\n").unwrap();
        std::fs::write(dir.path().join("bad"), "nocolon\n").unwrap();
        let (user, pass) = read_user_password("north", Some(dir.path())).unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("viewer", "s3cr:et"));
        let err = read_user_password("bad", Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("bad") && !err.contains("nocolon"), "{err}");
        assert!(read("missing", Some(dir.path())).is_err());
    }
}
