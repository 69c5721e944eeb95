use segment_sync_testkit::sender_auth::{FakeSnsCertHost, SnsSigner};
use serde_json::json;

use super::*;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}

fn verifier(host: &FakeSnsCertHost) -> SnsVerifier {
    SnsVerifier::new(SnsCertHosts::parse(&host.host()).unwrap())
}

const PAYLOAD: &str = r#"{"notificationType":"ResourceUpdated","resource":{"typeId":"customer","id":"c1"},"version":2}"#;

#[tokio::test]
async fn messages_signed_like_aws_pass_in_both_versions() {
    let host = FakeSnsCertHost::start().await;
    let verifier = verifier(&host);
    let signer = SnsSigner::default();

    let v2 = signer.notification(PAYLOAD, &host.cert_url());
    let v1 = SnsSigner::v1_notification(&host.cert_url());
    let confirmation =
        signer.subscription_confirmation("https://sns.example/confirm", &host.cert_url());

    assert_eq!(v2["SignatureVersion"], "2");
    assert_eq!(v1["SignatureVersion"], "1");
    for message in [v2, v1, confirmation] {
        assert_eq!(verifier.verify(&object(message)).await, Ok(()));
    }
    assert_eq!(host.fetches(), 1, "the certificate is fetched once");
}

#[tokio::test]
async fn an_altered_message_is_refused() {
    let host = FakeSnsCertHost::start().await;
    let verifier = verifier(&host);
    let signed = SnsSigner::default().notification(PAYLOAD, &host.cert_url());
    let altered = |name: &str, value: Value| {
        let mut message = signed.clone();
        message[name] = value;
        object(message)
    };
    let mut no_subject = object(signed.clone());
    no_subject.remove("Subject");
    let cases = [
        (
            "Message",
            altered("Message", json!(PAYLOAD.replace("c1", "c2"))),
        ),
        (
            "TopicArn",
            altered("TopicArn", json!("arn:aws:sns:eu-west-1:666:evil")),
        ),
        ("Subject removed", no_subject),
        (
            "v1 claimed for a v2 signature",
            altered("SignatureVersion", json!("1")),
        ),
        (
            "the v1 fixture's Message",
            object({
                let mut v1 = SnsSigner::v1_notification(&host.cert_url());
                v1["Message"] = json!(PAYLOAD);
                v1
            }),
        ),
    ];
    for (what, message) in cases {
        assert_eq!(
            verifier.verify(&message).await,
            Err(SnsRefusal::Signature.into()),
            "{what}"
        );
    }
}

#[tokio::test]
async fn unsigned_and_unknown_versions_are_refused() {
    let host = FakeSnsCertHost::start().await;
    let verifier = verifier(&host);
    let signed = SnsSigner::default().notification(PAYLOAD, &host.cert_url());
    let mut unsigned = object(signed.clone());
    unsigned.remove("Signature");
    let mut no_version = object(signed.clone());
    no_version.remove("SignatureVersion");
    let mut version_3 = object(signed);
    version_3.insert("SignatureVersion".to_owned(), json!("3"));

    assert_eq!(
        verifier.verify(&unsigned).await,
        Err(SnsRefusal::Missing("Signature").into())
    );
    assert_eq!(
        verifier.verify(&no_version).await,
        Err(SnsRefusal::Missing("SignatureVersion").into())
    );
    assert_eq!(
        verifier.verify(&version_3).await,
        Err(SnsRefusal::Version("`3`".to_owned()).into())
    );
    assert_eq!(host.fetches(), 0);
}

#[tokio::test]
async fn a_certificate_off_the_allowed_hosts_is_refused_without_fetching_it() {
    let host = FakeSnsCertHost::start().await;
    let signer = SnsSigner::default();
    let strict = SnsVerifier::new(SnsCertHosts::default());
    let other_port = SnsVerifier::new(SnsCertHosts::parse("127.0.0.1:1").unwrap());

    for (what, verifier, cert_url) in [
        ("loopback, not an SNS host", &strict, host.cert_url()),
        ("another port", &other_port, host.cert_url()),
        (
            "plain http to an SNS host",
            &strict,
            "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem".to_owned(),
        ),
        (
            "a look-alike host",
            &strict,
            "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem".to_owned(),
        ),
        (
            "an SNS-like label under another domain",
            &strict,
            "https://sns.evil.example.com/cert.pem".to_owned(),
        ),
    ] {
        let message = object(signer.notification(PAYLOAD, &cert_url));
        assert!(
            matches!(
                verifier.verify(&message).await,
                Err(SnsError::Refused(SnsRefusal::CertUrl(_)))
            ),
            "{what}"
        );
    }
    assert_eq!(host.fetches(), 0);
}

#[tokio::test]
async fn a_url_without_a_certificate_is_refused() {
    let host = FakeSnsCertHost::start().await;
    let verifier = verifier(&host);
    let cert_url = host.cert_url().replace("test.pem", "missing.pem");

    let result = verifier
        .verify(&object(
            SnsSigner::default().notification(PAYLOAD, &cert_url),
        ))
        .await;

    assert!(
        matches!(&result, Err(SnsError::Refused(SnsRefusal::Certificate { reason, .. })) if reason == "HTTP 404"),
        "{result:?}"
    );
}

#[test]
fn host_patterns_match_whole_labels_and_ports() {
    let hosts = SnsCertHosts::default();
    let allowed = |url: &str| hosts.allow(&url::Url::parse(url).unwrap());

    assert!(allowed(
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem"
    ));
    assert!(allowed(
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem"
    ));
    assert!(allowed("https://SNS.EU-WEST-1.AMAZONAWS.COM/x.pem"));
    assert!(!allowed("https://sns.amazonaws.com/x.pem"));
    assert!(!allowed("https://sns.a.b.amazonaws.com/x.pem"));
    assert!(!allowed("https://sns.eu-west-1.amazonaws.com:8443/x.pem"));
    assert!(!allowed(
        "https://user:pw@sns.eu-west-1.amazonaws.com/x.pem"
    ));
    assert!(!allowed("ftp://sns.eu-west-1.amazonaws.com/x.pem"));

    let local = SnsCertHosts::parse("localhost:8080, 127.0.0.1").unwrap();
    assert!(local.allow(&url::Url::parse("http://localhost:8080/c.pem").unwrap()));
    assert!(local.allow(&url::Url::parse("http://127.0.0.1/c.pem").unwrap()));
    assert!(!local.allow(&url::Url::parse("http://127.0.0.1:8080/c.pem").unwrap()));

    for bad in [
        "",
        "sns..amazonaws.com",
        "sns.*.amazonaws.com:port",
        "sns/x",
        "a,",
    ] {
        assert!(SnsCertHosts::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_string_to_sign_follows_aws_order() {
    let notification = object(json!({
        "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hello",
        "Timestamp": "ts", "Subject": "s", "UnsubscribeURL": "u", "SigningCertURL": "c",
    }));
    assert_eq!(
        string_to_sign(&notification).unwrap(),
        "Message\nhello\nMessageId\nm\nSubject\ns\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    );
    let confirmation = object(json!({
        "Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t", "Message": "hi",
        "Timestamp": "ts", "Token": "k", "SubscribeURL": "s",
    }));
    assert_eq!(
        string_to_sign(&confirmation).unwrap(),
        "Message\nhi\nMessageId\nm\nSubscribeURL\ns\nTimestamp\nts\nToken\nk\nTopicArn\nt\nType\nSubscriptionConfirmation\n"
    );
}
