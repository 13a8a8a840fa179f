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
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o755);
    file.set_size(busybox.len() as u64);
    builder
        .append_data(&mut file, "bin/busybox", busybox.as_slice())
        .unwrap();
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
        let mut marker = tar::Header::new_gnu();
        marker.set_mode(0o644);
        marker.set_size(content.len() as u64);
        builder
            .append_data(&mut marker, "marker", content.as_bytes())
            .unwrap();
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
    let name: String = engine
        .host()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let lock = std::fs::File::create(dir.join(format!("busybox-{name}.lock"))).unwrap();
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
