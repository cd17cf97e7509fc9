//! A person's passkey for the end-to-end tests, and the ceremonies a browser runs with it.
//!
//! [`SoftAuthenticator`] is webauthn-rs's software authenticator (`SoftPasskey` from
//! webauthn-authenticator-rs: P-256 keys, real signatures, a signature counter, "user
//! verified"), wrapped so that it behaves like a platform passkey: it keeps the user
//! handle of each credential it creates and returns it at sign-in, so discoverable
//! (username-less) sign-in works, and it refuses a registration whose exclusion list names
//! one of its own credentials, as authenticators do. It takes the origin it is told,
//! like a browser would report it, so tests can play a page served from another origin.
//!
//! The helpers below drive Warrant's JSON endpoints with a [`Browser`] exactly as
//! `assets/passkey.js` does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use url::Url;
use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::TestGateway;
use crate::web::{Browser, Page};

/// One credential the authenticator holds.
#[derive(Debug, Clone)]
struct Held {
    rp_id: String,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
}

/// A software passkey device (see the module documentation).
pub struct SoftAuthenticator {
    device: SoftPasskey,
    held: Vec<Held>,
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

fn bytes(b64: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(b64.as_str().unwrap_or_default())
        .expect("base64url in the options")
}

impl SoftAuthenticator {
    /// A device that performs user verification.
    pub fn new() -> Self {
        Self {
            device: SoftPasskey::new(true),
            held: Vec::new(),
        }
    }

    /// How many credentials it holds.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The base64url id of the credential made last.
    pub fn last_credential_id(&self) -> Option<String> {
        self.held
            .last()
            .map(|h| URL_SAFE_NO_PAD.encode(&h.credential_id))
    }

    /// `navigator.credentials.create()` on a page of `origin`: the creation options as
    /// the server sent them, the credential as the page would post it.
    pub fn register(&mut self, origin: &str, options: &Value) -> Result<Value, String> {
        let public_key = &options["publicKey"];
        for excluded in public_key["excludeCredentials"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = bytes(&excluded["id"]);
            if self.held.iter().any(|h| h.credential_id == id) {
                return Err("InvalidStateError: this device already holds a credential".into());
            }
        }
        let rp_id = public_key["rp"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let user_handle = bytes(&public_key["user"]["id"]);
        // The software key stores no resident credential itself; this wrapper keeps the
        // user handle instead, which is what a resident credential adds.
        let mut options = options.clone();
        if let Some(selection) = options["publicKey"]["authenticatorSelection"].as_object_mut() {
            selection.insert("requireResidentKey".into(), false.into());
            selection.remove("residentKey");
        }
        let ccr: CreationChallengeResponse =
            serde_json::from_value(options).map_err(|e| format!("creation options: {e}"))?;
        let origin = Url::parse(origin).map_err(|e| e.to_string())?;
        let credential = self
            .device
            .perform_register(origin, ccr.public_key, 60_000)
            .map_err(|e| format!("the authenticator refused: {e:?}"))?;
        self.held.push(Held {
            rp_id,
            credential_id: credential.raw_id.clone(),
            user_handle,
        });
        serde_json::to_value(&credential).map_err(|e| e.to_string())
    }

    /// `navigator.credentials.get()` on a page of `origin` with no allow list (discoverable
    /// sign-in): the device offers the newest credential it holds for the relying party.
    pub fn sign_in(&mut self, origin: &str, options: &Value) -> Result<Value, String> {
        let rp_id = options["publicKey"]["rpId"].as_str().unwrap_or_default();
        let held = self
            .held
            .iter()
            .rev()
            .find(|h| h.rp_id == rp_id)
            .cloned()
            .ok_or_else(|| format!("NotAllowedError: no credential for {rp_id}"))?;
        let mut options = options.clone();
        options["publicKey"]["allowCredentials"] = json!([{
            "type": "public-key",
            "id": URL_SAFE_NO_PAD.encode(&held.credential_id),
        }]);
        let rcr: RequestChallengeResponse =
            serde_json::from_value(options).map_err(|e| format!("request options: {e}"))?;
        let origin = Url::parse(origin).map_err(|e| e.to_string())?;
        let mut assertion = self
            .device
            .perform_auth(origin, rcr.public_key, 60_000)
            .map_err(|e| format!("the authenticator refused: {e:?}"))?;
        assertion.response.user_handle = Some(held.user_handle);
        serde_json::to_value(&assertion).map_err(|e| e.to_string())
    }
}

/// The JSON body of a page (panics with the body when it is not JSON).
pub fn json_of(page: &Page) -> Value {
    serde_json::from_str(&page.body)
        .unwrap_or_else(|e| panic!("{} answered non-JSON ({e}): {}", page.url, page.body))
}

/// The token of a setup link.
pub fn token_of(link: &str) -> String {
    let url = Url::parse(link).expect("a setup link is a URL");
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("a token in the setup link")
}

/// Opens the setup link in `browser` and creates the first admin with `device`; returns
/// the finish answer (200 with `{redirect}` on success).
pub async fn run_setup(
    gw: &TestGateway,
    browser: &Browser,
    device: &mut SoftAuthenticator,
    link: &str,
    name: &str,
    email: &str,
) -> Page {
    run_setup_at(&gw.public_url(), browser, device, link, name, email).await
}

/// [`run_setup`] for a Warrant whose public URL is `origin` (one started as a process).
pub async fn run_setup_at(
    origin: &str,
    browser: &Browser,
    device: &mut SoftAuthenticator,
    link: &str,
    name: &str,
    email: &str,
) -> Page {
    let page = browser.get(link).await;
    assert_eq!(page.status, 200, "the setup page opens: {}", page.body);
    let csrf = page.csrf().expect("the setup page carries a CSRF token");
    let token = token_of(link);
    let start = browser
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": token, "name": name, "email": email}),
        )
        .await;
    assert_eq!(start.status, 200, "setup start: {}", start.body);
    let credential = device
        .register(origin, &json_of(&start))
        .expect("the authenticator registers");
    browser
        .post_json(
            "/setup/passkey/finish",
            &csrf,
            &json!({"token": token, "credential": credential}),
        )
        .await
}

/// A gateway's first admin, created through its setup link: the signed-in browser and
/// the passkey device.
pub async fn first_admin(gw: &TestGateway, email: &str) -> (Browser, SoftAuthenticator) {
    let link = gw
        .running
        .setup_link
        .clone()
        .expect("a fresh gateway has a setup link");
    let browser = gw.browser();
    let mut device = SoftAuthenticator::new();
    let done = run_setup(gw, &browser, &mut device, &link, "First Admin", email).await;
    assert_eq!(done.status, 200, "setup finish: {}", done.body);
    (browser, device)
}

/// Signs in with `device` in `browser` from a page of `origin` (normally
/// `gw.public_url()`); the finish answer.
pub async fn passkey_sign_in(
    browser: &Browser,
    device: &mut SoftAuthenticator,
    origin: &str,
) -> Page {
    let page = browser.get("/signin").await;
    let csrf = page.csrf().expect("the sign-in page carries a CSRF token");
    let start = browser
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    assert_eq!(start.status, 200, "sign-in start: {}", start.body);
    let assertion = device
        .sign_in(origin, &json_of(&start))
        .expect("the authenticator signs");
    browser
        .post_json(
            "/auth/passkey/login/finish",
            &csrf,
            &json!({"credential": assertion, "next": "/account"}),
        )
        .await
}
