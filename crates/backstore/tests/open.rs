//! Parsing of backing-store strings and options, and the errors `open_store` gives.

use backstore::spec::{GlfsOptions, GlfsSpec};
use backstore::{open_store, OpenError, StoreOptions};
use rstest::rstest;

#[rstest]
#[case::tgt_seed("vol1@gprfs010:disk1", "vol1", &["gprfs010"], "disk1")]
#[case::several_hosts("vol1@h1,h2,h3:disk1", "vol1", &["h1", "h2", "h3"], "disk1")]
#[case::absolute_path("v@h:/dir/disk.img", "v", &["h"], "/dir/disk.img")]
#[case::colon_in_path("v@h:dir/a:b", "v", &["h"], "dir/a:b")]
#[case::ipv4("v@192.0.2.7:d", "v", &["192.0.2.7"], "d")]
#[case::ipv6("v@[2001:db8::1]:d", "v", &["2001:db8::1"], "d")]
#[case::ipv6_and_name("v@[fe80::1],gl2.example:d", "v", &["fe80::1", "gl2.example"], "d")]
fn good_glfs_specs(
    #[case] spec: &str,
    #[case] volume: &str,
    #[case] hosts: &[&str],
    #[case] path: &str,
) {
    let parsed = GlfsSpec::parse(spec).unwrap();
    assert_eq!(
        parsed,
        GlfsSpec {
            volume: volume.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: path.into()
        }
    );
}

/// Another file on the same volume and servers, written so that it parses back.
#[rstest]
#[case::one_host("vol1@gprfs010:disk1", "clones/c1.img", "vol1@gprfs010:clones/c1.img")]
#[case::several_hosts("v@h1,h2:d", "/c", "v@h1,h2:/c")]
#[case::ipv6_and_name("v@[fe80::1],gl2.example:d", "c:1", "v@[fe80::1],gl2.example:c:1")]
fn a_glfs_spec_with_another_path(#[case] spec: &str, #[case] path: &str, #[case] want: &str) {
    let parsed = GlfsSpec::parse(spec).unwrap();
    let other = parsed.with_path(path);
    assert_eq!(other, want);
    let back = GlfsSpec::parse(&other).unwrap();
    assert_eq!((back.volume, back.hosts), (parsed.volume, parsed.hosts));
    assert_eq!(back.path, path);
}

#[rstest]
#[case::no_at(
    "vol1gprfs010:disk1",
    "missing '@' between volume and host (expected volume@host:path)"
)]
#[case::empty_volume("@h:d", "empty volume name before '@'")]
#[case::slash_in_volume("a/b@h:d", "volume name \"a/b\" contains '/'")]
#[case::no_colon("v@h", "missing ':' before the file path (expected volume@host:path)")]
#[case::empty_host("v@:d", "empty host name")]
#[case::empty_host_in_list("v@h1,,h2:d", "empty host name")]
#[case::trailing_comma("v@h1,:d", "empty host name")]
#[case::empty_path("v@h:", "empty file path after ':'")]
#[case::root_path("v@h:/", "empty file path after ':'")]
#[case::unterminated_bracket("v@[::1:d", "unterminated '[' in host")]
#[case::empty_brackets("v@[]:d", "empty host name in '[]'")]
#[case::not_ipv6("v@[host]:d", "\"host\" in brackets is not an IPv6 address")]
#[case::junk_after_bracket("v@[::1]x:d", "unexpected text after ']' in host [::1]")]
#[case::space_in_host("v@my host:d", "host name \"my host\" contains ' '")]
fn bad_glfs_specs(#[case] spec: &str, #[case] reason: &str) {
    let err = GlfsSpec::parse(spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid backing store {spec:?}: {reason}")
    );
}

#[test]
fn glfs_options_parse_all_keys() {
    let o = GlfsOptions::parse(
        "logfile=/var/log/g.log; loglevel=7;transport=rdma;port=24008;timeout=5;client-io-threads=on;linger=0;copy-offload=on;coherent=on;read-part=1M",
    )
    .unwrap();
    assert_eq!(
        o,
        GlfsOptions {
            logfile: Some("/var/log/g.log".into()),
            loglevel: 7,
            transport: "rdma".into(),
            port: 24008,
            timeout_secs: 5,
            client_io_threads: true,
            hold_secs: 15,
            linger_secs: 0,
            copy_offload: true,
            coherent: Some(true),
            read_part: Some(1 << 20),
            batch_sched: true,
            follow_cpu: true,
        }
    );
    assert_eq!(
        GlfsOptions::parse("read-part=off").unwrap().read_part,
        None,
        "off: one gfapi read per request"
    );
    assert_eq!(
        GlfsOptions::parse("read-part=64k").unwrap().read_part,
        Some(64 << 10)
    );
    assert_eq!(
        GlfsOptions::parse("read-part=64M").unwrap().read_part,
        Some(64 << 20)
    );
    // Whole reads by default (docs/performance.md, fifteenth round).
    assert_eq!(GlfsOptions::default().read_part, None);
    assert_eq!(GlfsOptions::parse("").unwrap().read_part, None);
    assert!(GlfsOptions::default().batch_sched, "on unless turned off");
    assert!(GlfsOptions::parse("batch-sched=on").unwrap().batch_sched);
    assert!(!GlfsOptions::parse("batch-sched=off").unwrap().batch_sched);
    assert!(GlfsOptions::default().follow_cpu, "on unless turned off");
    assert!(GlfsOptions::parse("follow-cpu=on").unwrap().follow_cpu);
    assert!(!GlfsOptions::parse("follow-cpu=off").unwrap().follow_cpu);
    assert_eq!(
        GlfsOptions::parse("coherent=off").unwrap().coherent,
        Some(false)
    );
    assert_eq!(
        GlfsOptions::default().coherent,
        None,
        "unset: off unless shared"
    );
    assert_eq!(GlfsOptions::parse("hold=0").unwrap().hold_secs, 0);
    assert_eq!(GlfsOptions::parse("hold=20").unwrap().hold_secs, 20);
    assert_eq!(
        GlfsOptions::default().linger_secs,
        60,
        "an idle mount stays a minute"
    );
    assert_eq!(
        GlfsOptions::parse("linger=86400").unwrap().linger_secs,
        86400
    );
    assert_eq!(GlfsOptions::parse("").unwrap(), GlfsOptions::default());
    assert_eq!(GlfsOptions::default().loglevel, 5);
    assert!(!GlfsOptions::default().client_io_threads);
    assert!(
        !GlfsOptions::default().copy_offload,
        "off: Gluster 10.3 ignores off_in"
    );
}

#[rstest]
#[case::unknown_key(
    "logfile=x;colour=blue",
    "unknown key \"colour\" (expected logfile, loglevel, transport, port, timeout, client-io-threads, hold, linger, copy-offload, coherent, read-part, batch-sched or follow-cpu)"
)]
#[case::client_io_threads("client-io-threads=yes", "client-io-threads \"yes\" is not on or off")]
#[case::copy_offload("copy-offload=1", "copy-offload \"1\" is not on or off")]
#[case::coherent("coherent=yes", "coherent \"yes\" is not on or off")]
#[case::hold_not_a_number("hold=soon", "hold \"soon\" is not a number of seconds from 0 to 3600")]
#[case::hold_too_long("hold=3601", "hold \"3601\" is not a number of seconds from 0 to 3600")]
#[case::linger_not_a_number(
    "linger=-1",
    "linger \"-1\" is not a number of seconds from 0 to 86400"
)]
#[case::linger_too_long(
    "linger=86401",
    "linger \"86401\" is not a number of seconds from 0 to 86400"
)]
#[case::read_part_word(
    "read-part=on",
    "read-part \"on\" is not off or a size from 64k to 64M in multiples of 4k"
)]
#[case::read_part_small(
    "read-part=60k",
    "read-part \"60k\" is not off or a size from 64k to 64M in multiples of 4k"
)]
#[case::read_part_large(
    "read-part=65M",
    "read-part \"65M\" is not off or a size from 64k to 64M in multiples of 4k"
)]
#[case::read_part_unaligned(
    "read-part=66000",
    "read-part \"66000\" is not off or a size from 64k to 64M in multiples of 4k"
)]
#[case::batch_sched("batch-sched=yes", "batch-sched \"yes\" is not on or off")]
#[case::follow_cpu("follow-cpu=1", "follow-cpu \"1\" is not on or off")]
#[case::no_equals("loglevel", "\"loglevel\" is not key=value")]
#[case::level_range("loglevel=10", "loglevel \"10\" is not a number from 0 to 9")]
#[case::level_text("loglevel=debug", "loglevel \"debug\" is not a number from 0 to 9")]
#[case::transport("transport=udp", "transport \"udp\" is not tcp or rdma")]
#[case::unix_transport("transport=unix", "transport \"unix\" is not tcp or rdma")]
#[case::port("port=70000", "port \"70000\" is not a number from 0 to 65535")]
#[case::empty_logfile("logfile=", "empty logfile")]
#[case::zero_timeout(
    "timeout=0",
    "timeout \"0\" is not a number of seconds from 1 to 86400"
)]
fn bad_glfs_options(#[case] opts: &str, #[case] reason: &str) {
    let err = GlfsOptions::parse(opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid backing store options {opts:?}: {reason}")
    );
}

fn opts(bstype: &str, backing: &str, bsopts: &str) -> StoreOptions {
    StoreOptions {
        bstype: bstype.into(),
        backing_store: backing.into(),
        bsopts: bsopts.into(),
        ..Default::default()
    }
}

fn open_err(o: &StoreOptions) -> String {
    match open_store(o) {
        Ok(s) => panic!("opened {}", s.describe()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn memory_size_comes_from_create_size_or_the_backing_store() {
    let s = open_store(&opts("memory", "64M", "")).unwrap();
    assert_eq!(s.geometry().size_bytes(), 64 << 20);
    let s = open_store(&StoreOptions {
        create_size: Some(1 << 20),
        block_size: Some(4096),
        ..opts("memory", "", "")
    })
    .unwrap();
    assert_eq!(
        (s.geometry().block_size, s.geometry().num_blocks),
        (4096, 256)
    );
    // A partial block is dropped.
    let s = open_store(&StoreOptions {
        create_size: Some(1000),
        ..opts("memory", "", "")
    })
    .unwrap();
    assert_eq!(s.geometry().num_blocks, 1);
}

#[rstest]
#[case::unknown_type(
    opts("nbd", "x", ""),
    "unknown backing store type \"nbd\" (expected memory, file or glfs)"
)]
#[case::memory_without_size(
    opts("memory", "", ""),
    "invalid backing store \"\": memory store needs a size: give a create size or a backing store like 64M"
)]
#[case::memory_bad_size(
    opts("memory", "lots", ""),
    "invalid backing store \"lots\": invalid size \"lots\": expected a number with an optional unit K, M, G, T or P"
)]
#[case::memory_too_small(
    opts("memory", "100", ""),
    "cannot open memory store: size 100 is smaller than one 512-byte block"
)]
#[case::memory_options(
    opts("memory", "1M", "threads=2"),
    "invalid backing store options \"threads=2\": unknown key \"threads\" (memory takes no options)"
)]
#[case::file_empty_path(opts("file", "", ""), "invalid backing store \"\": empty file path")]
#[case::file_missing(
    opts("rdwr", "/nonexistent/dir/disk.img", ""),
    "cannot open file /nonexistent/dir/disk.img: No such file or directory (os error 2) (give a create size to create it)"
)]
#[case::file_bad_threads(
    opts("file", "/x", "threads=0"),
    "invalid backing store options \"threads=0\": threads \"0\" is not a number from 1 to 256"
)]
#[case::file_unknown_option(
    opts("file", "/x", "logfile=a"),
    "invalid backing store options \"logfile=a\": unknown key \"logfile\" (expected threads)"
)]
#[case::glfs_bad_spec(
    opts("glfs", "vol1:disk", ""),
    "invalid backing store \"vol1:disk\": missing '@' between volume and host (expected volume@host:path)"
)]
#[case::glfs_bad_option(
    opts("glfs", "v@h:d", "loglevel=3;foo=1"),
    "invalid backing store options \"loglevel=3;foo=1\": unknown key \"foo\" (expected logfile, loglevel, transport, port, timeout, client-io-threads, hold, linger, copy-offload, coherent, read-part, batch-sched or follow-cpu)"
)]
#[case::bad_block_size(
    StoreOptions { block_size: Some(1000), ..opts("memory", "1M", "") },
    "invalid backing store options \"block_size=1000\": block size must be a power of two from 512 to 65536"
)]
fn open_errors_name_the_problem(#[case] o: StoreOptions, #[case] expect: &str) {
    assert_eq!(open_err(&o), expect);
}

#[test]
fn unloadable_libgfapi_names_the_path_and_the_loader_message() {
    let o = StoreOptions {
        gfapi_library: Some("/nonexistent/lib/libgfapi.so.0".into()),
        ..opts("glfs", "vol1@gprfs010:disk1", "")
    };
    let err = open_store(&o).err().expect("no library, no store");
    assert!(matches!(err, OpenError::Library(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot load libgfapi: cannot load /nonexistent/lib/libgfapi.so.0: "),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
}

#[test]
fn a_library_without_gfapi_symbols_is_rejected_naming_the_symbol() {
    let o = StoreOptions {
        gfapi_library: Some("libc.so.6".into()),
        ..opts("glfs", "vol1@h:disk1", "")
    };
    let text = open_store(&o)
        .err()
        .expect("libc is no libgfapi")
        .to_string();
    assert!(
        text.starts_with("cannot load libgfapi: libc.so.6 has no symbol glfs_new: "),
        "{text}"
    );
}

#[test]
fn file_store_rounds_a_partial_block_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.img");
    std::fs::write(&path, vec![7u8; 4096 + 100]).unwrap();
    let s = open_store(&StoreOptions {
        block_size: Some(4096),
        ..opts("file", path.to_str().unwrap(), "")
    })
    .unwrap();
    assert_eq!(s.geometry().num_blocks, 1);
    assert_eq!(s.describe(), format!("file {}", path.display()));
}

#[test]
fn file_store_creates_nothing_for_a_size_below_one_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.img");
    let err = open_err(&StoreOptions {
        create_size: Some(100),
        ..opts("file", path.to_str().unwrap(), "")
    });
    assert_eq!(
        err,
        format!(
            "cannot open file {}: size 100 is smaller than one 512-byte block",
            path.display()
        )
    );
    assert!(!path.exists());
}

#[test]
fn file_store_keeps_the_size_of_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let s = open_store(&StoreOptions {
        create_size: Some(1 << 20),
        ..opts("file", path.to_str().unwrap(), "")
    })
    .unwrap();
    assert_eq!(s.geometry().size_bytes(), 8192);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
}
