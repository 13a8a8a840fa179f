//! One certificate from the ACME server: an order for the names, each name proven by the
//! challenge asked (the proxy answers it), then the certificate with a new key.

use std::path::Path;
use std::time::Duration;

use capstan_proxy::{Challenges, ProxyClient};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::files::{Stored, leaf, write_private};
use crate::{Acme, Challenge};

/// How long the ACME server may take to check the names, and to sign.
const VALIDATION_TIMEOUT: Duration = Duration::from_mins(2);

/// The account capstan keeps with the ACME server (`<data>/certs/account.json`, 0600).
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The account for `acme`'s directory: the one kept, or a new one (then kept).
///
/// # Errors
/// The server cannot be reached or refuses the account.
pub(crate) async fn account(acme: &Acme, certs: &Path) -> Result<Account, String> {
    let builder = || match &acme.ca_file {
        Some(ca) => Account::builder_with_root(ca)
            .map_err(|e| format!("cannot trust {}: {e}", ca.display())),
        None => Account::builder().map_err(|e| format!("cannot make an HTTPS client: {e}")),
    };
    let path = certs.join("account.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(saved) = serde_json::from_str::<SavedAccount>(&text)
        && saved.directory == acme.directory
    {
        return builder()?
            .from_credentials(saved.credentials)
            .await
            .map_err(|e| format!("the ACME server at {}: {e}", acme.directory));
    }
    let contact = acme.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            format!(
                "the ACME server at {} refused an account: {e}",
                acme.directory
            )
        })?;
    let saved = SavedAccount {
        directory: acme.directory.clone(),
        credentials,
    };
    let text = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
    write_private(&path, &text).map_err(|e| format!("cannot keep {}: {e}", path.display()))?;
    info!(directory = %acme.directory, "made an ACME account");
    Ok(account)
}

/// A TLS-ALPN-01 challenge certificate for `name` (RFC 8737: self-signed, holding the key
/// authorization's digest in the acmeIdentifier extension).
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<capstan_proxy::Certificate, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(capstan_proxy::Certificate {
        names: vec![name.to_owned()],
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `names`, each proven by `challenge` through the proxy.
///
/// # Errors
/// Why the ACME server did not sign, in its words where it gave them.
pub(crate) async fn issue(
    account: &Account,
    proxy: &ProxyClient,
    names: &[String],
    challenge: Challenge,
) -> Result<Stored, String> {
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the ACME server refused the order: {e}"))?;
    let mut open = Challenges::default();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("cannot read an authorization: {e}"))?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("{name}: the authorization is {other:?}")),
        }
        let mut handle = authz.challenge(kind.clone()).ok_or_else(|| {
            format!(
                "{name}: the ACME server offers no {} challenge",
                challenge.as_str()
            )
        })?;
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::Http01 => {
                open.http01
                    .insert(handle.token.clone(), key_authorization.as_str().to_owned());
            }
            Challenge::TlsAlpn01 => {
                open.tls_alpn01.insert(
                    name.clone(),
                    alpn_certificate(&name, key_authorization.digest().as_ref())?,
                );
            }
        }
        // the proxy answers before the server is told to look
        proxy
            .challenges(open.clone())
            .await
            .map_err(|e| format!("the proxy cannot answer the challenge: {e}"))?;
        handle
            .set_ready()
            .await
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let polled = order
        .poll_ready(&RetryPolicy::new().timeout(VALIDATION_TIMEOUT))
        .await;
    let _ = proxy.challenges(Challenges::default()).await;
    let status = polled.map_err(|e| format!("the ACME server did not check the names: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order).await);
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("the ACME server did not sign: {e}"))?;
    let chain_pem = order
        .poll_certificate(&RetryPolicy::new().timeout(VALIDATION_TIMEOUT))
        .await
        .map_err(|e| format!("the ACME server did not give the certificate: {e}"))?;
    let (mut held, not_after) = leaf(&chain_pem)?;
    held.sort();
    Ok(Stored {
        names: held,
        not_after,
        chain_pem,
        key_pem,
    })
}

/// The ACME server's reasons for an order that failed: each failed challenge's problem.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    if let Some(problem) = &order.state().error {
        reasons.push(problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        for c in &authz.challenges {
            if let Some(problem) = &c.error {
                reasons.push(format!("{name}: {problem}"));
            }
        }
    }
    if reasons.is_empty() {
        "the ACME server found the order invalid".to_owned()
    } else {
        reasons.join("; ")
    }
}
