//! The credential vault's keys end to end: values sealed at rest, `warrant vault status`
//! and `rotate-key`, and a start refused when the configured key cannot read the vault.

use std::path::Path;
use std::process::Output;

use warrant_consent::vault::SHARED;
use warrant_e2e::{Backend, TestGateway, run_cli};

/// 32 bytes in base64: the new vault key, and a wrong one.
const NEW_KEY: &str = "bmV3IHZhdWx0IGtleSBmb3IgdGhlIHRlc3QgISEhISE=";
const WRONG_KEY: &str = "YW5vdGhlciBrZXkgdGhhdCBpcyBub3QgdGhlIG9uZSE=";

/// `warrant ARGS` against the gateway with `config` as its configuration file and the
/// vault key `key` in `WARRANT_TEST_VAULT_KEY`.
async fn warrant(gw: &TestGateway, config: &Path, key: &str, args: &[&str]) -> Output {
    let mut command = gw.cli(args);
    command
        .arg("--config")
        .arg(config)
        .env("WARRANT_TEST_VAULT_KEY", key);
    run_cli(command, "").await
}

fn text(output: &Output) -> (bool, String) {
    let mut all = String::from_utf8_lossy(&output.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), all)
}

/// Every byte of the data directory (the SQLite database and its WAL).
fn data_dir_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("the data directory")
        .flatten()
    {
        if entry.path().is_file() {
            bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_vault_key_rewraps_every_record_and_a_wrong_one_stops_the_start() {
    let gw = TestGateway::start("", Backend::current()).await;
    let vault = gw.running.vault.clone();
    vault
        .put(SHARED, "github", "api_key", b"ghp_vault_test_secret_0001")
        .await
        .expect("put");
    vault
        .put(
            "someone",
            "linear",
            "api_key",
            b"lin_vault_test_secret_0002",
        )
        .await
        .expect("put");
    let value = vault.get(SHARED, "github", "api_key").await.expect("get");
    assert_eq!(
        value.map(|v| v.to_vec()),
        Some(b"ghp_vault_test_secret_0001".to_vec())
    );
    if gw.backend == Backend::Sqlite {
        let bytes = data_dir_bytes(gw.data_dir.path());
        let clear = bytes
            .windows(b"_vault_test_secret_".len())
            .any(|w| w == b"_vault_test_secret_");
        assert!(
            !clear,
            "a vault value is in clear in the database or its WAL"
        );
    }

    let configs = tempfile::tempdir().expect("tempdir");
    let config = configs.path().join("warrant.toml");
    std::fs::write(&config, "[vault]\nkey = \"${WARRANT_TEST_VAULT_KEY}\"\n").expect("write");

    // Before: both records under the key derived from the secret key.
    let (ok, status) = text(&warrant(&gw, &config, NEW_KEY, &["vault", "status"]).await);
    assert!(ok, "{status}");
    assert!(status.contains("previous  2 records"), "{status}");

    let (ok, rotated) = text(&warrant(&gw, &config, NEW_KEY, &["vault", "rotate-key"]).await);
    assert!(ok, "{rotated}");
    assert!(rotated.contains("re-wrapped 2 data keys"), "{rotated}");
    assert!(rotated.contains("current   2 records"), "{rotated}");

    // Another key cannot read what the new one wrapped: the start is refused, saying so.
    let (ok, refused) = text(&warrant(&gw, &config, WRONG_KEY, &["vault", "status"]).await);
    assert!(!ok, "{refused}");
    assert!(
        refused.contains("2 vault records are wrapped by key-encryption key")
            && refused.contains("not configured"),
        "{refused}"
    );
    let (ok, serve) = text(
        &warrant(
            &gw,
            &config,
            WRONG_KEY,
            &["serve", "--listen", "127.0.0.1:0"],
        )
        .await,
    );
    assert!(!ok, "warrant serve started with a wrong vault key: {serve}");
    assert!(
        serve.contains("cannot open the credential vault"),
        "{serve}"
    );
    assert!(
        !serve.contains(WRONG_KEY) && !serve.contains(NEW_KEY),
        "{serve}"
    );
    gw.stop().await;
}

/// `warrant vault ARGS` against the gateway with `stdin` on its standard input.
async fn vault_cli(gw: &TestGateway, args: &[&str], stdin: &str) -> (bool, String) {
    let args: Vec<&str> = std::iter::once("vault")
        .chain(args.iter().copied())
        .collect();
    text(&gw.warrant(&args, stdin).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_set_from_standard_input_listed_by_email_and_removed() {
    use warrant_idp::users::{NewUser, Role, Status};
    let gw = TestGateway::start("", Backend::current()).await;
    let alice = gw
        .running
        .idp
        .users
        .create(NewUser {
            email: "alice@example.com".into(),
            display_name: "Alice".into(),
            role: Role::Member,
            status: Status::Active,
        })
        .await
        .expect("a person");

    let (ok, out) = vault_cli(&gw, &["set", "github", "api_key"], "ghp_from_stdin_0001\n").await;
    assert!(ok && out.contains("shared by everyone"), "{out}");
    let (ok, out) = vault_cli(
        &gw,
        &["set", "linear", "api_key", "--person", "alice@example.com"],
        "lin_alice_from_stdin_0002",
    )
    .await;
    assert!(ok && out.contains("alice@example.com's own"), "{out}");
    let (ok, out) = vault_cli(
        &gw,
        &["set", "linear", "api_key", "--person", "nobody@example.com"],
        "x",
    )
    .await;
    assert!(
        !ok && out.contains("nobody with the email nobody@example.com"),
        "{out}"
    );
    let (ok, out) = vault_cli(&gw, &["set", "linear", "api_key"], "\n").await;
    assert!(!ok && out.contains("no value on standard input"), "{out}");

    // What the running gateway reads: the values, without the newline.
    let vault = &gw.running.vault;
    let shared = vault.get(SHARED, "github", "api_key").await.expect("get");
    assert_eq!(
        shared.map(|v| v.to_vec()),
        Some(b"ghp_from_stdin_0001".to_vec())
    );
    let own = vault
        .get(&alice.id, "linear", "api_key")
        .await
        .expect("get");
    assert_eq!(
        own.map(|v| v.to_vec()),
        Some(b"lin_alice_from_stdin_0002".to_vec())
    );

    // Listed by whose they are, never with a value.
    let (ok, list) = vault_cli(&gw, &["list"], "").await;
    assert!(ok, "{list}");
    assert!(list.contains("github") && list.contains("shared"), "{list}");
    assert!(
        list.contains("linear") && list.contains("alice@example.com"),
        "{list}"
    );
    assert!(
        !list.contains("from_stdin") && !list.contains(&alice.id),
        "{list}"
    );

    let (ok, out) = vault_cli(&gw, &["remove", "github", "api_key"], "").await;
    assert!(ok && out.contains("removed api_key"), "{out}");
    let (ok, out) = vault_cli(&gw, &["remove", "github", "api_key"], "").await;
    assert!(
        !ok && out.contains("no api_key is stored for upstream github"),
        "{out}"
    );
    gw.stop().await;
}
