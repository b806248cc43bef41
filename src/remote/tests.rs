//! Unit tests of the remote cache: URLs, credentials, scrubbing, the bounded flush.

use super::*;

/// A store that accepts connections and never answers: the end-of-run wait gives up
/// when it should and says how many uploads are still pending.
#[test]
fn a_bounded_flush_reports_what_is_still_pending() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let b = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_region("us-east-1")
        .with_access_key_id("AKIDTEST")
        .with_secret_access_key("not-a-real-secret-value");
    let access = Access {
        keep_local: true,
        upload: true,
    };
    let r = Remote::open_with("s3://stuck/p", access, b).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::cache::Cache::open(dir.path()).unwrap();
    let k = Key::of(&serde_json::json!({"q": 1}));
    cache.put(&k, "call", &serde_json::json!(1)).unwrap();
    crate::cache::Tier::written(&r, &k, cache.bytes_of(&k).unwrap());
    let t = std::time::Instant::now();
    let rep = r.flush(Duration::from_millis(400));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(rep.unfinished, 1, "{rep:?}");
    assert_eq!(rep.uploaded, 0);
    let (_, warnings) = rep.lines();
    assert!(
        warnings[0].contains("1 still pending when the wait ended"),
        "{warnings:?}"
    );
    drop(silent);
}

#[test]
fn no_credentials_is_an_error_not_a_metadata_request() {
    let access = Access {
        keep_local: false,
        upload: false,
    };
    let b = AmazonS3Builder::new().with_endpoint("http://127.0.0.1:9");
    let e = Remote::open_with("s3://bucket/p", access, b)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no credentials: set AWS_ACCESS_KEY_ID"), "{e}");
    let b = AmazonS3Builder::new().with_access_key_id("AKIDONLY");
    let e = Remote::open_with("s3://bucket/p", access, b)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
    let b = AmazonS3Builder::new()
        .with_endpoint("http://127.0.0.1:9")
        .with_skip_signature(true);
    assert!(Remote::open_with("s3://bucket/p", access, b).is_ok());
}

#[test]
fn urls_are_checked() {
    let u = RemoteUrl::parse("s3://my-bucket/team/cache/").unwrap();
    assert_eq!(u.bucket, "my-bucket");
    assert_eq!(u.prefix, "team/cache");
    assert_eq!(u.to_string(), "s3://my-bucket/team/cache");
    assert_eq!(RemoteUrl::parse("s3://abc").unwrap().prefix, "");
    for bad in [
        "gs://b/p",
        "s3://",
        "s3:///p",
        "s3://ab/p",
        "s3://My_Bucket/p",
        "s3://bucket/a//b",
        "s3://bucket/../b",
        "/tmp/cache",
    ] {
        let e = RemoteUrl::parse(bad).unwrap_err().to_string();
        assert!(e.contains("e.g. s3://"), "{bad}: {e}");
    }
}

#[test]
fn only_loopback_endpoints_may_be_plain_http() {
    for ok in [
        "http://127.0.0.1:9000",
        "http://localhost:9000/",
        "http://[::1]:80",
        "http://127.0.0.1",
    ] {
        assert!(is_loopback(ok), "{ok}");
    }
    for no in [
        "https://127.0.0.1:9000",
        "http://10.0.0.1:9000",
        "http://s3.example.org",
        "http://localhost.example.org",
    ] {
        assert!(!is_loopback(no), "{no}");
    }
}

#[test]
fn secrets_are_scrubbed_and_objects_mirror_the_cache_layout() {
    let s = scrub("denied for abcdSECRETxyz", &["abcdSECRETxyz".into()]);
    assert_eq!(s, "denied for [redacted]");
    let k = Key("ab".to_string() + &"c".repeat(62));
    assert_eq!(
        object_path("p/q", &k).to_string(),
        format!("p/q/objects/ab/{}", "c".repeat(62))
    );
    assert!(object_path("", &k).to_string().starts_with("objects/ab/"));
}
