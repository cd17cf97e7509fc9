//! The server's secret key: the 32 bytes that encrypt Warrant's own secrets at rest (the
//! token signing keys; later the vault). From `server.secret_key` when configured, else
//! from `secret.key` in the data directory, created on first start (32 random bytes,
//! base64, mode 0600). A key file others can read, or one that is not a key, stops
//! the start: Warrant never guesses about its secret key.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::config::{Config, Secret, decode_key_32};

/// The key file's name inside the data directory.
pub const SECRET_KEY_FILE: &str = "secret.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("server.secret_key is not 32 bytes of base64")]
    BadConfig,
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the secret key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the secret key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the secret key file {path} can be read by other users (mode {mode:o}); \
         make it private with `chmod 600 {path}` and start again"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "the secret key file {path} does not hold 32 bytes of base64; restore the right file, \
         or set server.secret_key (a new key cannot decrypt what the old one encrypted)"
    )]
    Malformed { path: PathBuf },
}

/// The secret key of `config`: `server.secret_key`, else `secret.key` in the data
/// directory (created on first start).
pub fn load_or_create(config: &Config) -> Result<Zeroizing<[u8; 32]>, SecretKeyError> {
    resolve(config.server.secret_key.as_ref(), &config.server.data_dir)
}

/// The secret key of `config` if there is one (configured, or the file in the data
/// directory); never creates one.
pub fn load_existing(config: &Config) -> Result<Option<Zeroizing<[u8; 32]>>, SecretKeyError> {
    if let Some(secret) = config.server.secret_key.as_ref() {
        return decode_key_32(secret.expose())
            .map(|k| Some(Zeroizing::new(k)))
            .ok_or(SecretKeyError::BadConfig);
    }
    match read(&config.server.data_dir.join(SECRET_KEY_FILE)) {
        Err(SecretKeyError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// [`load_or_create`] from its parts.
pub fn resolve(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> Result<Zeroizing<[u8; 32]>, SecretKeyError> {
    if let Some(secret) = configured {
        return decode_key_32(secret.expose())
            .map(Zeroizing::new)
            .ok_or(SecretKeyError::BadConfig);
    }
    let path = data_dir.join(SECRET_KEY_FILE);
    match read(&path) {
        Err(SecretKeyError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            create(data_dir, &path)
        }
        other => other,
    }
}

fn read(path: &Path) -> Result<Zeroizing<[u8; 32]>, SecretKeyError> {
    let file = std::fs::File::open(path).map_err(|source| SecretKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    check_private(&file, path)?;
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut &file, &mut text).map_err(|source| {
        SecretKeyError::Read {
            path: path.to_owned(),
            source,
        }
    })?;
    decode_key_32(&text)
        .map(Zeroizing::new)
        .ok_or_else(|| SecretKeyError::Malformed {
            path: path.to_owned(),
        })
}

#[cfg(unix)]
fn check_private(file: &std::fs::File, path: &Path) -> Result<(), SecretKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| SecretKeyError::Read {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SecretKeyError::Permissions {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &std::fs::File, _path: &Path) -> Result<(), SecretKeyError> {
    Ok(())
}

/// Writes a new key to a private temporary file and links it into place, so that two
/// processes starting at once end up with the same key (the second reads the first's).
fn create(data_dir: &Path, path: &Path) -> Result<Zeroizing<[u8; 32]>, SecretKeyError> {
    std::fs::create_dir_all(data_dir).map_err(|source| SecretKeyError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut key[..]);
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(&key[..])));
    let tmp = data_dir.join(format!(".{SECRET_KEY_FILE}.{}", std::process::id()));
    let failed = |source| SecretKeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let written = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new secret key");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let first = resolve(None, &data).expect("created");
        let second = resolve(None, &data).expect("read back");
        assert_eq!(*first, *second);
        let path = data.join(SECRET_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&data)
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(SECRET_KEY_FILE)]);
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_malformed_file_stops_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        resolve(None, dir.path()).expect("created");
        let path = dir.path().join(SECRET_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = resolve(None, dir.path()).expect_err("group-readable");
        assert!(
            matches!(err, SecretKeyError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "c2hvcnQ=\n").expect("write");
        let err = resolve(None, dir.path()).expect_err("malformed");
        assert!(matches!(err, SecretKeyError::Malformed { .. }), "{err}");
        assert!(
            !err.to_string().contains("c2hvcnQ"),
            "the content is never printed"
        );
    }

    #[test]
    fn the_configured_key_wins() {
        let dir = tempfile::tempdir().expect("dir");
        let key = STANDARD.encode([5u8; 32]);
        let got = resolve(Some(&Secret::new(key)), dir.path()).expect("configured");
        assert_eq!(*got, [5u8; 32]);
        assert!(!dir.path().join(SECRET_KEY_FILE).exists());
        let bad = resolve(Some(&Secret::new("nope".into())), dir.path());
        assert!(matches!(bad, Err(SecretKeyError::BadConfig)));
    }
}
