//! The one way distill builds an HTTP client: TLS by rustls with the `ring` crypto provider,
//! installed once per process before the first client is built (reqwest is compiled
//! without a provider of its own, which saved a minute of C build for aws-lc-sys).

use std::sync::Once;

/// Installs the `ring` provider as the process default (once; a provider installed by
/// someone else first is kept).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with the crypto provider in place; build every client from it.
pub fn client_builder() -> reqwest::ClientBuilder {
    init();
    reqwest::Client::builder()
}

/// A one-off GET (as `reqwest::get`), with the crypto provider in place.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client_builder().build()?.get(url).send().await
}
