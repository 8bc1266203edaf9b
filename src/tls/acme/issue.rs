//! One ACME order, start to finish, through `instant-acme`: the account
//! (loaded from storage or created), the challenges answered by this node,
//! a fresh P-256 key and CSR made with openssl, and the issued chain.

use super::{challenge, store, Settings};
use crate::config::AcmeChallenge;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509Ref, X509Req};
use std::time::Duration;

/// A chain and its key, PEM.
pub(super) struct Issued {
    pub chain_pem: String,
    pub key_pem: Vec<u8>,
}

/// How long the CA may take to validate or to issue before the order
/// counts as failed (and is retried later with backoff).
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

fn err(what: &str) -> impl Fn(instant_acme::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn account(s: &Settings) -> Result<Account, String> {
    let builder = || match &s.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(err("HTTP client")),
        None => Account::builder().map_err(err("HTTP client")),
    };
    let path = store::account_path(s);
    if let Ok(text) = std::fs::read_to_string(&path) {
        match serde_json::from_str::<AccountCredentials>(&text) {
            Ok(creds) => {
                return builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(err("restoring the account"))
            }
            Err(e) => log::warn!(
                "ACME: ignoring unreadable account file {}: {e}; creating a new account",
                path.display()
            ),
        }
    }
    let contact: Vec<&str> = s.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await
        .map_err(err("creating the account"))?;
    let json = serde_json::to_vec(&creds).map_err(|e| format!("account: {e}"))?;
    store::write_private(&path, &json)
        .map_err(|e| format!("storing the account in {}: {e}", path.display()))?;
    log::info!("ACME: created account {} at {}", account.id(), s.directory);
    Ok(account)
}

/// What this node published for the CA, withdrawn when the order ends
/// either way.
#[derive(Default)]
struct Published {
    http: Vec<String>,
    alpn: Vec<String>,
}

impl Published {
    fn withdraw(&self, s: &Settings) {
        for token in &self.http {
            challenge::withdraw_http(token);
            store::drop_challenge(s, token);
        }
        for name in &self.alpn {
            challenge::withdraw_alpn(name);
        }
    }
}

/// The CA's suggested renewal window for one certificate (RFC 9773), in
/// unix seconds, and how long the CA asks clients to wait before asking
/// again.
pub(super) struct Window {
    pub start: i64,
    pub end: i64,
    pub ask_again: Duration,
}

/// Asks the CA when `leaf` should be renewed. `Ok(None)`: the CA's
/// directory offers no renewal information.
pub(super) async fn renewal_window(s: &Settings, leaf: &X509Ref) -> Result<Option<Window>, String> {
    let id = certificate_id(leaf)?;
    let account = account(s).await?;
    match account.renewal_info(&id).await {
        Ok((info, ask_again)) => Ok(Some(Window {
            start: info.suggested_window.start.unix_timestamp(),
            end: info.suggested_window.end.unix_timestamp(),
            ask_again,
        })),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(format!("renewal information: {e}")),
    }
}

/// RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial), the
/// serial as its DER INTEGER content octets (a leading zero when the top
/// bit is set).
pub(super) fn certificate_id(leaf: &X509Ref) -> Result<CertificateIdentifier<'static>, String> {
    let aki = leaf
        .authority_key_id()
        .ok_or("the certificate has no Authority Key Identifier")?;
    let mut serial = leaf
        .serial_number()
        .to_bn()
        .map_err(|e| format!("serial: {e}"))?
        .to_vec();
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    Ok(CertificateIdentifier {
        authority_key_identifier: base64url(aki.as_slice()).into(),
        serial: base64url(&serial).into(),
    })
}

fn base64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// Orders a certificate for every configured name; `replaces` names the
/// certificate it succeeds (RFC 9773 §5), for a CA that offers renewal
/// information.
pub(super) async fn order(
    s: &Settings,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, String> {
    let account = account(s).await?;
    let ids: Vec<Identifier> = s.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut new_order = NewOrder::new(&ids);
    if let Some(id) = replaces {
        new_order = new_order.replaces(id);
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(err("new order"))?;
    let mut published = Published::default();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(auth) = authorizations.next().await {
            let mut auth = auth.map_err(err("authorization"))?;
            match auth.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("authorization is {other:?}")),
            }
            let kind = match s.challenge {
                AcmeChallenge::Http01 => ChallengeType::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut ch = auth
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let name = ch.identifier().to_string();
            let key_auth = ch.key_authorization();
            match s.challenge {
                AcmeChallenge::Http01 => {
                    challenge::publish_http(&ch.token, key_auth.as_str());
                    store::put_challenge(s, &ch.token, key_auth.as_str());
                    published.http.push(ch.token.clone());
                }
                AcmeChallenge::TlsAlpn01 => {
                    challenge::publish_alpn(&name, key_auth.digest().as_ref())
                        .map_err(|e| format!("TLS-ALPN-01 certificate: {e}"))?;
                    published.alpn.push(name.clone());
                }
            }
            ch.set_ready().await.map_err(err("challenge ready"))?;
        }
        let status = order.poll_ready(&POLL).await.map_err(err("validation"))?;
        if status != OrderStatus::Ready {
            return Err(format!("order is {status:?} after validation"));
        }
        let (csr, key_pem) = csr(&s.domains).map_err(|e| format!("CSR: {e}"))?;
        order.finalize_csr(&csr).await.map_err(err("finalize"))?;
        let chain_pem = order
            .poll_certificate(&POLL)
            .await
            .map_err(err("certificate"))?;
        Ok(Issued { chain_pem, key_pem })
    }
    .await;
    published.withdraw(s);
    result
}

/// A new P-256 key and a CSR for `names` (DER), with the key as PEM.
fn csr(names: &[String]) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut req = X509Req::builder()?;
    req.set_pubkey(&key)?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, &names[0])?;
    req.set_subject_name(&subject.build())?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        san.dns(n);
    }
    let mut exts = Stack::new()?;
    exts.push(san.build(&req.x509v3_context(None))?)?;
    req.add_extensions(&exts)?;
    req.sign(&key, MessageDigest::sha256())?;
    Ok((req.build().to_der()?, key.private_key_to_pem_pkcs8()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_has_no_padding_and_the_url_alphabet() {
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(b"a"), "YQ");
    }

    /// RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    /// serial 00:87:65:43:21 → "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
    #[test]
    fn certificate_id_matches_the_rfc_example() {
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_hex_str("87654321").unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let aki = "69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4";
        let ext = openssl::x509::X509Extension::new_from_der(
            &openssl::asn1::Asn1Object::from_str("2.5.29.35").unwrap(),
            false,
            &openssl::asn1::Asn1OctetString::new_from_bytes(&aki_der(aki)).unwrap(),
        )
        .unwrap();
        b.append_extension(ext).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let id = certificate_id(&b.build()).unwrap();
        assert_eq!(id.to_string(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    }

    /// AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }, DER.
    fn aki_der(hex: &str) -> Vec<u8> {
        let id: Vec<u8> = hex
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let mut v = vec![0x30, id.len() as u8 + 2, 0x80, id.len() as u8];
        v.extend(id);
        v
    }
}
