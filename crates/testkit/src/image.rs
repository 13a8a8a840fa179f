use bytes::Bytes;
use capstan_engine::Engine;

/// The test image: busybox-static with its applets linked, made through the engine's import API.
pub const BUSYBOX: &str = "capstan-test/busybox:1";

const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "httpd", "wget", "nc", "ls", "true", "false", "env", "mkdir",
];

/// A root filesystem tarball holding `/bin/busybox` and its applet links.
pub fn busybox_rootfs() -> Bytes {
    rootfs_with_file(None)
}

/// A tar archive of regular files `(path, content)`, mode 0644 (a build context, say).
pub fn tar_of(files: &[(&str, &[u8])]) -> Bytes {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        append_file(&mut builder, path, content, 0o644);
    }
    Bytes::from(builder.into_inner().unwrap())
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8], mode: u32) {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_size(content.len() as u64);
    builder.append_data(&mut header, path, content).unwrap();
}

/// The busybox root filesystem plus `/marker` holding `content` (for distinct image ids).
pub fn rootfs_with_file(content: Option<&str>) -> Bytes {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install busybox-static (scripts/test does)");
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder
        .append_data(&mut dir, "bin", std::io::empty())
        .unwrap();
    append_file(&mut builder, "bin/busybox", &busybox, 0o755);
    for applet in APPLETS {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_mode(0o777);
        link.set_size(0);
        builder
            .append_link(&mut link, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    if let Some(content) = content {
        append_file(&mut builder, "marker", content.as_bytes(), 0o644);
    }
    Bytes::from(builder.into_inner().unwrap())
}

/// Imports [`BUSYBOX`] unless the engine has it. Tests run as separate processes, so a lock
/// file makes the first one import it and the others wait and find it.
pub async fn ensure_busybox(engine: &Engine) {
    if engine.inspect_image(BUSYBOX).await.unwrap().is_some() {
        return;
    }
    let dir = crate::run_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // one lock for every engine: the run's engine is reachable by unix socket and by tcp
    let lock = std::fs::File::create(dir.join("busybox.lock")).unwrap();
    let lock = tokio::task::spawn_blocking(move || {
        lock.lock().unwrap();
        lock
    })
    .await
    .unwrap();
    if engine.inspect_image(BUSYBOX).await.unwrap().is_none() {
        engine
            .import_rootfs(busybox_rootfs(), BUSYBOX)
            .await
            .unwrap();
    }
    drop(lock);
}

/// Pushes `repo:TAG` for each of `tags` through `engine`: busybox with `/marker` holding the
/// tag, so that each has a digest of its own.
pub async fn push_versions(engine: &Engine, repo: &str, tags: &[&str]) {
    for tag in tags {
        let reference = format!("{repo}:{tag}");
        engine
            .import_rootfs(rootfs_with_file(Some(tag)), &reference)
            .await
            .unwrap();
        engine.push(&reference, None).await.unwrap();
    }
}
