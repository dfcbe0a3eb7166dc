//! Access tokens (`--write-token-file`, `--read-token-file`): one token per line (blank lines and `#`
//! comments skipped). When a file is given, its routes need one of its tokens as `Authorization: Bearer T`
//! (or Influx's `Token T`): writes (`/save`, `/write`) the write file's, reads (`/api`, `/export`, `/tags`,
//! `/metrics`) the read file's. `/health` and the page's files stay open. Tokens are compared in constant
//! time and never logged. Each core holds its own copy and reloads the files when the main thread counts a
//! SIGHUP (`reload`), so no lock is shared.

use std::path::{Path, PathBuf};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Write,
    Read,
    Nothing,
}

/// What `path` with `method` needs. A wrong method needs nothing (it gets its 405 either way).
pub fn need(path: crate::http::parse::Path, method: crate::http::parse::Method) -> Need {
    use crate::http::parse::{Method, Path};
    match (path, method) {
        (Path::Save | Path::Write, Method::Post) => Need::Write,
        (Path::Api | Path::Export | Path::Tags | Path::Metrics, Method::Get | Method::Head) => {
            Need::Read
        }
        _ => Need::Nothing,
    }
}

/// One kind's tokens: `None` when its file was not given (the routes are open).
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    write: Option<Vec<Vec<u8>>>,
    read: Option<Vec<Vec<u8>>>,
}

/// Reads a token file: its non-blank, non-comment lines, trimmed.
pub fn read_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading token file {}: {e}", path.display()))?;
    let tokens: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if tokens.is_empty() {
        return Err(format!("token file {} holds no token", path.display()));
    }
    Ok(tokens)
}

impl Tokens {
    /// Loads both files (each optional).
    pub fn load(write: Option<&PathBuf>, read: Option<&PathBuf>) -> Result<Tokens, String> {
        Ok(Tokens {
            write: write.map(|p| read_file(p)).transpose()?,
            read: read.map(|p| read_file(p)).transpose()?,
        })
    }

    /// True when neither kind is protected (the engine warns at start).
    pub fn is_open(&self) -> bool {
        self.write.is_none() && self.read.is_none()
    }

    /// Whether a request needing `need` with this `Authorization` header value may proceed.
    pub fn allows(&self, need: Need, authorization: Option<&[u8]>) -> bool {
        let set = match need {
            Need::Nothing => return true,
            Need::Write => &self.write,
            Need::Read => &self.read,
        };
        let Some(set) = set else { return true };
        let Some(given) = authorization.and_then(credential) else {
            return false;
        };
        // Every token is compared, each in constant time: the answer does not depend on where it matched.
        set.iter().fold(false, |found, t| {
            found | constant_time_eq::constant_time_eq(t, given)
        })
    }
}

/// The credential of `Bearer T` or `Token T` (scheme case-insensitive).
fn credential(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let ok = scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token");
    let token = rest.trim_ascii();
    (ok && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(write: &[&str], read: Option<&[&str]>) -> Tokens {
        let v = |s: &[&str]| s.iter().map(|t| t.as_bytes().to_vec()).collect();
        Tokens {
            write: Some(v(write)),
            read: read.map(v),
        }
    }

    #[test]
    fn bearer_and_token_schemes_and_wrong_ones() {
        let t = tokens(&["w1", "w2"], Some(&["r1"]));
        assert!(t.allows(Need::Write, Some(b"Bearer w2")));
        assert!(t.allows(Need::Write, Some(b"Token w1")));
        assert!(t.allows(Need::Write, Some(b"bearer   w1 ")));
        assert!(
            !t.allows(Need::Write, Some(b"Bearer r1")),
            "a read token cannot write"
        );
        assert!(
            !t.allows(Need::Read, Some(b"Bearer w1")),
            "nor a write token read"
        );
        assert!(t.allows(Need::Read, Some(b"Bearer r1")));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Basic w1",
            b"w1",
            b"Bearer w",
            b"Bearer w11",
            b"",
        ] {
            assert!(
                !t.allows(Need::Write, Some(bad)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!t.allows(Need::Write, None));
        assert!(t.allows(Need::Nothing, None));
        let writes_only = tokens(&["w"], None);
        assert!(
            writes_only.allows(Need::Read, None),
            "no read file: reads are open"
        );
        assert!(Tokens::default().is_open());
    }

    #[test]
    fn files_skip_blanks_and_comments_and_refuse_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "# ops team\n  abc  \n\ndef\n").unwrap();
        assert_eq!(
            read_file(&p).unwrap(),
            vec![b"abc".to_vec(), b"def".to_vec()]
        );
        std::fs::write(&p, "# nothing\n\n").unwrap();
        assert!(read_file(&p).unwrap_err().contains("no token"));
        assert!(read_file(&d.path().join("missing")).is_err());
    }
}

/// The access tokens of `--write-token-file` and `--read-token-file`, read now.
pub fn from_config(config: &crate::config::Config) -> Result<Tokens, String> {
    Tokens::load(
        config.write_token_file.as_ref(),
        config.read_token_file.as_ref(),
    )
}
