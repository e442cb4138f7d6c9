//! Unit tests of certificate generation and files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use std::fs;
use std::os::unix::fs::PermissionsExt;

use rcgen::KeyIdMethod;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::generate::{cert_der, key_id_method, parse};
use super::*;

fn der(pem: &Pem) -> Vec<u8> {
    cert_der(&pem.cert, "test").unwrap()
}

fn pki() -> (Pem, Pem, Pem) {
    let ca = generate_ca("test CA", 30).unwrap();
    let dns = ["localhost".to_owned(), "*.example.com".to_owned()];
    let server = generate_server(&ca, &dns, &["127.0.0.1".parse().unwrap()], 30).unwrap();
    let client = generate_client(&ca, "alice", 30).unwrap();
    (ca, server, client)
}

#[test]
fn ca_is_a_constrained_self_signed_ca() {
    let ca = generate_ca("test CA", 10).unwrap();
    let d = der(&ca);
    let c = parse(&d).unwrap();
    assert_eq!(c.subject(), c.issuer());
    let bc = c.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = c.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    c.verify_signature(None).unwrap();
    assert!(ca.key.contains("BEGIN PRIVATE KEY"));
    let v = c.validity();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(v.not_before.timestamp() <= now - 3500);
    assert!((v.not_after.timestamp() - (now + 10 * 86400)).abs() < 60);
    assert_eq!(c.raw_serial().len(), 16);
}

#[test]
fn chain_verifies_with_ekus_sans_and_aki() {
    let (ca, server, client) = pki();
    let (ca_der, s_der, c_der) = (der(&ca), der(&server), der(&client));
    let ca_c = parse(&ca_der).unwrap();
    for (d, server_auth) in [(&s_der, true), (&c_der, false)] {
        let c = parse(d).unwrap();
        assert_eq!(c.issuer(), ca_c.subject());
        c.verify_signature(Some(ca_c.public_key())).unwrap();
        assert!(!c.is_ca());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert_eq!(
            (eku.server_auth, eku.client_auth),
            (server_auth, !server_auth)
        );
        let aki = c
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
                _ => None,
            });
        assert_eq!(
            aki.map(|k| k.0.to_vec()),
            match key_id_method(&ca_c) {
                KeyIdMethod::PreSpecified(ski) => Some(ski),
                _ => None,
            }
        );
    }
    let s = parse(&s_der).unwrap();
    let sans = &s
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(matches!(sans[0], GeneralName::DNSName("localhost")));
    assert!(matches!(sans[1], GeneralName::DNSName("*.example.com")));
    assert!(matches!(sans[2], GeneralName::IPAddress([127, 0, 0, 1])));
    assert_ne!(s.raw_serial(), parse(&c_der).unwrap().raw_serial());
}

#[test]
fn crl_lists_the_revoked_serials() {
    let (ca, server, client) = pki();
    let crl_pem = generate_crl(&ca, &[&client]).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "X509 CRL");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    let ca_der = der(&ca);
    let ca_c = parse(&ca_der).unwrap();
    crl.verify_signature(ca_c.public_key()).unwrap();
    assert_eq!(crl.issuer(), ca_c.subject());
    let serials: Vec<_> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    let client_der = der(&client);
    assert_eq!(
        serials,
        vec![parse(&client_der).unwrap().raw_serial().to_vec()]
    );
    let server_der = der(&server);
    assert!(!serials.contains(&parse(&server_der).unwrap().raw_serial().to_vec()));
    assert_eq!(
        generate_crl(&ca, &[]).map(|p| p.contains("X509 CRL")).ok(),
        Some(true)
    );
    let other = generate_ca("other", 1).unwrap();
    assert!(matches!(
        generate_crl(&other, &[&client]),
        Err(CertError::NotIssuedByCa { .. })
    ));
}

#[test]
fn validity_window_is_explicit() {
    let ca = generate_ca("test CA", 1).unwrap();
    let past = OffsetDateTime::now_utc() - Duration::days(10);
    let expired =
        generate_client_with_validity(&ca, "old", past, past + Duration::days(1)).unwrap();
    let d = der(&expired);
    assert!(!parse(&d).unwrap().validity().is_valid());
    assert!(generate_client_with_validity(&ca, "x", past, past).is_err());
    assert!(generate_ca("x", 0).is_err());
    assert!(generate_ca("x", u32::MAX).is_err());
}

#[test]
fn bad_inputs_are_refused() {
    let (ca, server, _) = pki();
    for bad in [
        "",
        "a/b",
        "a+b",
        "a#b",
        "a\0b",
        "a\nb",
        "..",
        ".hidden",
        "-rf",
        "a b",
        &"x".repeat(65),
    ] {
        assert!(generate_client(&ca, bad, 1).is_err(), "{bad:?}");
    }
    assert!(generate_client(&ca, "bob.smith@example_1-x", 1).is_ok());
    assert!(matches!(
        generate_server(&ca, &[], &[], 1),
        Err(CertError::NoSubjectAltNames)
    ));
    for bad in ["127.0.0.1", "a b", "a..b", "-", ""] {
        assert!(
            generate_server(&ca, &[bad.to_owned()], &[], 1).is_err(),
            "{bad:?}"
        );
    }
    assert!(matches!(
        generate_client(&server, "x", 1),
        Err(CertError::NotACa)
    ));
    let other = generate_ca("other", 1).unwrap();
    let mismatched = Pem {
        cert: ca.cert.clone(),
        key: other.key,
    };
    assert!(matches!(
        generate_client(&mismatched, "x", 1),
        Err(CertError::CaKeyMismatch)
    ));
    let garbage = Pem {
        cert: "nope".into(),
        key: ca.key.clone(),
    };
    assert!(matches!(
        generate_client(&garbage, "x", 1),
        Err(CertError::InvalidPem { .. })
    ));
}

#[test]
fn write_refuses_overwrite_and_protects_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/sub");
    let (ca, _, client) = pki();
    let [crt, key] = write_pem_files(&dir, "alice", &client, false).unwrap();
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let crt_mode = fs::metadata(&crt).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        crt_mode & !0o644,
        0,
        "cert mode {crt_mode:o} is at most 0644 (less under umask)"
    );
    assert_eq!(crt_mode & 0o600, 0o600);
    assert_eq!(fs::read_to_string(&key).unwrap(), client.key);
    // Only the key exists: still nothing written.
    fs::remove_file(&crt).unwrap();
    assert!(matches!(
        write_pem_files(&dir, "alice", &ca, false),
        Err(CertError::AlreadyExists { .. })
    ));
    assert!(!crt.exists());
    // --force replaces both, and a key that had wider permissions is recreated 0600.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    write_pem_files(&dir, "alice", &ca, true).unwrap();
    assert_eq!(read_pem_files(&dir, "alice").unwrap(), ca);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(write_pem_files(&dir, "../escape", &ca, true).is_err());
}

#[test]
fn dev_certs_are_created_once_and_form_a_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let written = ensure_dev_certs(dir).unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "dev-client.crt",
            "dev-client.key"
        ]
    );
    assert!(ensure_dev_certs(dir).unwrap().is_empty());
    let ca = read_pem_files(dir, "ca").unwrap();
    let server = read_pem_files(dir, "server").unwrap();
    let ca_der = der(&ca);
    let s_der = der(&server);
    let s = parse(&s_der).unwrap();
    s.verify_signature(Some(parse(&ca_der).unwrap().public_key()))
        .unwrap();
    assert_eq!(
        s.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .len(),
        3
    );
    // Missing server pair: reissued from the existing CA; the client is kept.
    fs::remove_file(dir.join("server.crt")).unwrap();
    fs::remove_file(dir.join("server.key")).unwrap();
    let client_before = fs::read_to_string(dir.join("dev-client.crt")).unwrap();
    assert_eq!(ensure_dev_certs(dir).unwrap().len(), 2);
    assert_eq!(read_pem_files(dir, "ca").unwrap(), ca);
    assert_eq!(
        fs::read_to_string(dir.join("dev-client.crt")).unwrap(),
        client_before
    );
    // Half a pair, or leaves without their CA, are refused without writing.
    fs::remove_file(dir.join("server.key")).unwrap();
    assert!(matches!(
        ensure_dev_certs(dir),
        Err(CertError::IncompleteSet { .. })
    ));
    fs::remove_file(dir.join("server.crt")).unwrap();
    fs::remove_file(dir.join("ca.crt")).unwrap();
    fs::remove_file(dir.join("ca.key")).unwrap();
    assert!(matches!(
        ensure_dev_certs(dir),
        Err(CertError::IncompleteSet { .. })
    ));
    assert!(!dir.join("ca.crt").exists());
}

#[test]
fn serials_are_read_as_openssl_prints_them_and_kept_in_der_form() {
    assert_eq!(parse_serial("serial=0A1B").unwrap(), vec![0x0a, 0x1b]);
    assert_eq!(parse_serial("0a:1b").unwrap(), vec![0x0a, 0x1b]);
    assert_eq!(parse_serial("A1B").unwrap(), vec![0x0a, 0x1b]);
    // The high bit set: the DER INTEGER has a leading zero, as in the certificate.
    assert_eq!(parse_serial("8A").unwrap(), vec![0x00, 0x8a]);
    assert_eq!(parse_serial("00000001").unwrap(), vec![0x01]);
    assert_eq!(parse_serial("0").unwrap(), vec![0x00]);
    for bad in ["", "xyz", "serial=", &"ab".repeat(21)] {
        assert!(parse_serial(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_crl_is_extended_with_its_old_entries_and_only_from_its_own_ca() {
    let ca = generate_ca("CRL CA", 5).unwrap();
    let client = generate_client(&ca, "c1", 5).unwrap();
    let serial = serial_issued_by(&ca, &client.cert).unwrap();
    let at = OffsetDateTime::now_utc() - Duration::days(1);
    let first = Revoked {
        serial: serial.clone(),
        at: at.replace_nanosecond(0).unwrap(),
    };
    let crl = generate_crl_with(&ca, std::slice::from_ref(&first), Duration::days(7)).unwrap();
    assert_eq!(crl_entries(&ca, crl.as_bytes()).unwrap(), vec![first]);
    let other = generate_ca("Other CA", 5).unwrap();
    assert!(crl_entries(&other, crl.as_bytes()).is_err());
    assert!(serial_issued_by(&other, &client.cert).is_err());
    assert!(generate_crl_with(&ca, &[], Duration::days(-1)).is_err());
}

#[test]
fn every_key_type_signs_and_an_existing_key_is_kept() {
    let ca = generate_ca_with("P-384 CA", 5, KeySource::New(KeyType::P384)).unwrap();
    for kind in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
        let leaf = generate_client_with(&ca, "c", 5, KeySource::New(kind)).unwrap();
        let renewed = generate_client_with(&ca, "c", 5, KeySource::Existing(&leaf.key)).unwrap();
        assert_eq!(renewed.key, leaf.key);
        let (a, b) = (der(&leaf), der(&renewed));
        let (a, b) = (parse(&a).unwrap(), parse(&b).unwrap());
        assert_eq!(a.public_key().raw, b.public_key().raw, "{kind:?}");
        assert_ne!(a.raw_serial(), b.raw_serial());
    }
    assert!(generate_client_with(&ca, "c", 5, KeySource::Existing("not a key")).is_err());
}
