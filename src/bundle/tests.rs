//! Round trips, limits, and every archive `unpack` must refuse without writing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::BundleError;
use super::limits::Limits;
use super::pack::{pack, pack_with_limits};
use super::text::{decode, encode};
use super::unpack::{unpack, unpack_with_limits, Unpacked};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "lgw-bundle-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `parent/work`, with `work` created and empty.
fn target(tag: &str) -> (TempDir, PathBuf) {
    let parent = TempDir::new(tag);
    let work = parent.path().join("work");
    fs::create_dir(&work).unwrap();
    (parent, work)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Nothing was written: the parent holds only the (still empty) work dir.
fn assert_untouched(parent: &Path, work: &Path) {
    assert_eq!(names(parent), vec!["work".to_string()], "parent changed");
    assert!(
        names(work).is_empty(),
        "work dir changed: {:?}",
        names(work)
    );
}

/// Relative path -> contents (`None` for a directory); symlinks as "-> target".
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let to = fs::read_link(&path).unwrap();
                out.insert(rel, Some(format!("-> {}", to.display()).into_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// One hand-made tar entry: raw name and link bytes go straight into the header, so
/// the `tar` crate's writer-side path checks never see them.
struct Raw<'a> {
    name: &'a [u8],
    kind: u8,
    link: &'a [u8],
    data: &'a [u8],
}

fn raw(name: &str, kind: u8) -> Raw<'_> {
    Raw {
        name: name.as_bytes(),
        kind,
        link: b"",
        data: b"",
    }
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(e.data.len() as u64);
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend([0u8; 1024]);
    out
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        data,
        ..raw(name, b'0')
    }
}

fn link<'a>(name: &'a str, kind: u8, to: &'a str) -> Raw<'a> {
    Raw {
        link: to.as_bytes(),
        ..raw(name, kind)
    }
}

/// Paths of a packed bundle's entries, in archive order.
fn entry_paths(raw: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(raw));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn sample_work_dir(dir: &Path) {
    fs::create_dir_all(dir.join("cache")).unwrap();
    fs::write(dir.join("cache/id"), b"machine-id-123").unwrap();
    fs::write(dir.join("cache/user"), b"{\"token\":\"secret\"}").unwrap();
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    fs::write(dir.join("a/b/c/deep.bin"), (0..=255u8).collect::<Vec<_>>()).unwrap();
    fs::write(dir.join("a/b/empty.txt"), b"").unwrap();
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    let long = "n".repeat(120);
    fs::create_dir_all(dir.join("a").join(&long)).unwrap();
    fs::write(dir.join("a").join(&long).join("long-path.txt"), b"long").unwrap();
    fs::write(dir.join("big.dat"), vec![7u8; 70_000]).unwrap();
}

fn add_skipped(dir: &Path) -> std::os::unix::net::UnixListener {
    fs::write(dir.join(".info"), b"37010\n4242\n").unwrap();
    fs::write(dir.join(".info.json"), b"{\"port\":37010}").unwrap();
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::write(dir.join("logs/lingma.log"), b"log line").unwrap();
    fs::write(dir.join("cache/db.lock"), b"").unwrap();
    fs::write(dir.join("lingma.pid"), b"4242").unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("id", dir.join("cache/id-link")).unwrap();
    std::os::unix::net::UnixListener::bind(dir.join("lingma.sock")).unwrap()
}

#[test]
fn round_trip_skips_process_files_and_symlinks() {
    let expected_dir = TempDir::new("expected");
    sample_work_dir(expected_dir.path());
    let src = TempDir::new("src");
    sample_work_dir(src.path());
    let _socket = add_skipped(src.path());

    let raw = pack(src.path()).unwrap();
    let text = encode(&raw);
    // Wrapped like a mail or terminal would.
    let wrapped: String = text
        .as_bytes()
        .chunks(76)
        .map(|c| format!("  {}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let decoded = decode(&wrapped).unwrap();
    assert_eq!(decoded, raw);

    let (_parent, work) = target("dst");
    let summary = unpack(&decoded, &work).unwrap();
    assert_eq!(tree(&work), tree(expected_dir.path()));
    assert_eq!(summary.files, 6);
    assert_eq!(summary.bytes, 14 + 18 + 256 + 4 + 70_000);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(work.join("cache/user"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "login files are owner-only");
    }
}

#[test]
fn pack_is_sorted_relative_and_deterministic() {
    let src = TempDir::new("det");
    sample_work_dir(src.path());
    let one = pack(src.path()).unwrap();
    let two = pack(src.path()).unwrap();
    assert_eq!(one, two);
    let paths = entry_paths(&one);
    assert!(paths
        .iter()
        .all(|p| !p.starts_with('/') && !p.starts_with("./")));
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| Path::new(a).components().cmp(Path::new(b).components()));
    assert_eq!(paths, sorted);
    assert_eq!(paths.first().map(String::as_str), Some("a"));
    assert!(paths.contains(&"cache/user".to_string()));
}

#[test]
fn pack_refuses_oversized_work_dir() {
    let src = TempDir::new("big");
    fs::write(src.path().join("blob"), vec![1u8; 64 * 1024]).unwrap();
    let limits = Limits {
        max_bytes: 32 * 1024,
        max_entries: 10,
    };
    let err = pack_with_limits(src.path(), limits).unwrap_err();
    assert!(matches!(err, BundleError::WorkDirTooLarge { .. }), "{err}");
    for i in 0..11 {
        fs::write(src.path().join(format!("f{i}")), b"x").unwrap();
    }
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let err = pack_with_limits(src.path(), limits).unwrap_err();
    assert!(
        matches!(err, BundleError::WorkDirTooManyEntries { .. }),
        "{err}"
    );
    assert!(pack(&src.path().join("missing")).is_err());
}

#[test]
fn unpack_creates_missing_work_dir_and_accepts_dot_prefixes() {
    let parent = TempDir::new("dot");
    let work = parent.path().join("new/work");
    let tar = raw_tar(&[
        raw("./", b'5'),
        raw("./cache/", b'5'),
        file("./cache/id", b"abc"),
        file("plain", b"p"),
    ]);
    let summary = unpack(&gzip(&tar), &work).unwrap();
    assert_eq!(summary, Unpacked { files: 2, bytes: 4 });
    assert_eq!(fs::read(work.join("cache/id")).unwrap(), b"abc");
    assert_eq!(fs::read(work.join("plain")).unwrap(), b"p");
}

#[test]
fn unpack_overwrites_regular_files_and_keeps_others() {
    let (_parent, work) = target("over");
    fs::create_dir(work.join("cache")).unwrap();
    fs::write(work.join("cache/id"), b"old id that is longer").unwrap();
    fs::write(work.join("cache/other"), b"kept").unwrap();
    let tar = raw_tar(&[file("cache/id", b"new")]);
    unpack(&gzip(&tar), &work).unwrap();
    assert_eq!(fs::read(work.join("cache/id")).unwrap(), b"new");
    assert_eq!(fs::read(work.join("cache/other")).unwrap(), b"kept");
    assert_eq!(
        names(&work.join("cache")),
        vec!["id", "other"],
        "no temp files left"
    );
}

/// Unpacks a malicious archive into `parent/work` and checks it fails without writing.
fn refused(tag: &str, tar: &[u8]) -> (BundleError, TempDir, PathBuf) {
    let (parent, work) = target(tag);
    let err = unpack(&gzip(tar), &work).unwrap_err();
    assert_untouched(parent.path(), &work);
    (err, parent, work)
}

#[test]
fn rejects_parent_dir_escape() {
    let (err, parent, _) = refused(
        "dotdot",
        &raw_tar(&[file("ok.txt", b"fine"), file("../escape.txt", b"x")]),
    );
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("\"../escape.txt\" escapes the workDir"),
        "{err}"
    );
    assert!(!parent.path().join("escape.txt").exists());

    let (err, parent, _) = refused("dotdot2", &raw_tar(&[file("a/../../b", b"x")]));
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
    assert!(!parent.path().join("b").exists());

    let (err, _, _) = refused("dotdot3", &raw_tar(&[file("../../etc/passwd", b"x")]));
    assert!(
        err.to_string()
            .starts_with("bundle entry \"../../etc/passwd\" escapes the workDir"),
        "{err}"
    );
}

#[test]
fn rejects_absolute_path() {
    let parent = TempDir::new("abs");
    let work = parent.path().join("work");
    fs::create_dir(&work).unwrap();
    let abs = parent.path().join("abs.txt");
    let tar = raw_tar(&[file(abs.to_str().unwrap(), b"x")]);
    let err = unpack(&gzip(&tar), &work).unwrap_err();
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
    assert!(err.to_string().contains("absolute"), "{err}");
    assert_untouched(parent.path(), &work);
    assert!(!abs.exists());

    let (err, _, _) = refused("abs2", &raw_tar(&[file("/tmp/abs.txt", b"x")]));
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
}

#[test]
fn rejects_symlink_then_write_through_it() {
    let parent = TempDir::new("symabs");
    let work = parent.path().join("work");
    fs::create_dir(&work).unwrap();
    let out = parent.path().to_str().unwrap().to_string();
    let tar = raw_tar(&[link("link", b'2', &out), file("link/pwned", b"x")]);
    let err = unpack(&gzip(&tar), &work).unwrap_err();
    assert!(
        matches!(&err, BundleError::Link { entry, hard: false, .. } if entry == "link"),
        "{err}"
    );
    assert_untouched(parent.path(), &work);
    assert!(!parent.path().join("pwned").exists());

    let (err, _, _) = refused(
        "symetc",
        &raw_tar(&[link("link", b'2', "/etc"), file("link/passwd", b"x")]),
    );
    assert!(matches!(err, BundleError::Link { .. }), "{err}");
}

#[test]
fn rejects_relative_escaping_symlink_and_hardlink() {
    let (err, _, _) = refused("symrel", &raw_tar(&[link("link", b'2', "../..")]));
    assert!(
        matches!(err, BundleError::Link { hard: false, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("links are not allowed"), "{err}");

    let (err, _, _) = refused("hard", &raw_tar(&[link("passwd", b'1', "/etc/passwd")]));
    assert!(matches!(err, BundleError::Link { hard: true, .. }), "{err}");
}

#[test]
fn rejects_devices_and_fifos() {
    for (kind, what) in [
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "fifo"),
    ] {
        let (err, _, _) = refused("dev", &raw_tar(&[file("ok", b"x"), raw("dev", kind)]));
        assert!(matches!(err, BundleError::UnsupportedType { .. }), "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    let (err, _, _) = refused("unknown", &raw_tar(&[raw("weird", b'Z')]));
    assert!(matches!(err, BundleError::UnsupportedType { .. }), "{err}");
}

#[test]
fn rejects_gzip_bomb_before_writing() {
    let big = vec![0u8; 2 * 1024 * 1024];
    let tar = raw_tar(&[file("ok", b"x"), file("big", &big)]);
    let gz = gzip(&tar);
    assert!(
        gz.len() < 64 * 1024,
        "test bundle should be small: {}",
        gz.len()
    );
    let (parent, work) = target("bomb");
    let limits = Limits {
        max_bytes: 1024 * 1024,
        max_entries: 100,
    };
    let err = unpack_with_limits(&gz, &work, limits).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
    assert_untouched(parent.path(), &work);
    // The same bundle under the real limit is fine.
    unpack(&gz, &work).unwrap();
    assert_eq!(
        fs::metadata(work.join("big")).unwrap().len(),
        big.len() as u64
    );
}

#[test]
fn rejects_too_many_entries() {
    let entries: Vec<String> = (0..5).map(|i| format!("d{i}/")).collect();
    let raws: Vec<Raw<'_>> = entries.iter().map(|n| raw(n, b'5')).collect();
    let (parent, work) = target("count");
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 3,
    };
    let err = unpack_with_limits(&gzip(&raw_tar(&raws)), &work, limits).unwrap_err();
    assert!(
        matches!(err, BundleError::TooManyEntries { limit: 3 }),
        "{err}"
    );
    assert_untouched(parent.path(), &work);
}

#[test]
fn rejects_contradicting_entries() {
    let (err, _, _) = refused("clash", &raw_tar(&[file("a", b"x"), file("a/b", b"y")]));
    assert!(matches!(err, BundleError::Conflict { .. }), "{err}");
    let (err, _, _) = refused("dup", &raw_tar(&[file("a", b"x"), file("a", b"y")]));
    assert!(matches!(err, BundleError::Conflict { .. }), "{err}");
}

#[test]
fn rejects_bad_base64() {
    assert!(matches!(
        decode("not base64!!"),
        Err(BundleError::Base64(_))
    ));
    assert!(matches!(decode("QUJD="), Err(BundleError::Base64(_))));
    assert!(matches!(decode(" \n\t"), Err(BundleError::Empty)));
    assert_eq!(decode("QU\nJD\n").unwrap(), b"ABC");
    let err = decode("QUJD$$$$").unwrap_err();
    assert!(
        err.to_string().starts_with("bundle is not valid base64"),
        "{err}"
    );
}

#[test]
fn rejects_not_gzip_and_truncated_gzip() {
    let (parent, work) = target("notgz");
    let err = unpack(b"hello, this is not gzip", &work).unwrap_err();
    assert!(matches!(err, BundleError::NotGzip), "{err}");
    let err = unpack(b"", &work).unwrap_err();
    assert!(matches!(err, BundleError::NotGzip), "{err}");
    let err = unpack(&[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5], &work).unwrap_err();
    assert!(matches!(err, BundleError::Corrupt(_)), "{err}");
    // A gzip of something that is not a tar.
    let err = unpack(&gzip(&[b'x'; 600]), &work).unwrap_err();
    assert!(matches!(err, BundleError::Corrupt(_)), "{err}");
    assert_untouched(parent.path(), &work);

    let src = TempDir::new("trunc-src");
    sample_work_dir(src.path());
    let raw = pack(src.path()).unwrap();
    for cut in [raw.len() / 2, raw.len() - 4, raw.len() - 1] {
        let err = unpack(&raw[..cut], &work).unwrap_err();
        assert!(matches!(err, BundleError::Corrupt(_)), "cut {cut}: {err}");
        assert_untouched(parent.path(), &work);
    }
}

#[test]
fn refuses_to_write_through_existing_symlinks() {
    let (parent, work) = target("through");
    let outside = parent.path().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, work.join("cache")).unwrap();
    let tar = raw_tar(&[file("fine", b"ok"), file("cache/id", b"x")]);
    let err = unpack(&gzip(&tar), &work).unwrap_err();
    assert!(
        matches!(&err, BundleError::ThroughSymlink { entry, .. } if entry == "cache/id"),
        "{err}"
    );
    assert!(names(&outside).is_empty());
    assert!(
        !work.join("fine").exists(),
        "validation happens before writing"
    );

    // The final component as a symlink to a file outside.
    let (parent, work) = target("through-file");
    let secret = parent.path().join("secret.txt");
    fs::write(&secret, b"original").unwrap();
    fs::create_dir(work.join("cache")).unwrap();
    std::os::unix::fs::symlink(&secret, work.join("cache/id")).unwrap();
    let err = unpack(&gzip(&raw_tar(&[file("cache/id", b"x")])), &work).unwrap_err();
    assert!(matches!(err, BundleError::ThroughSymlink { .. }), "{err}");
    assert_eq!(fs::read(&secret).unwrap(), b"original");
}
