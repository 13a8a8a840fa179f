//! A container's log as a Kubernetes node's kubelet writes it, for tests and benchmarks: CRI
//! records (`<time> <stream> <F|P> <text>`, time in RFC 3339 with nanoseconds, trailing zeros
//! cut as Go's `RFC3339Nano` does) in `<pods>/<namespace>_<pod>_<uid>/<container>/0.log`,
//! rotated as the kubelet's container log manager does: past `max_size` the file is renamed
//! `0.log.<YYYYMMDD-hhmmss>` and a new one started, every rotated file but the newest is
//! gzipped (written to `.tmp`, renamed to `.gz`, the plain one removed), and at most
//! `max_files` files are kept, the live one included.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct KubeletLog {
    path: PathBuf,
    file: File,
    max_size: u64,
    max_files: usize,
    written: u64,
    /// Rotations so far (each one's name is a second after the last).
    rotations: u64,
    /// The rotated files kept, oldest first.
    rotated: Vec<PathBuf>,
}

impl KubeletLog {
    /// Starts `0.log` of `container` in pod `namespace/pod` (`uid`) under `pods`.
    pub fn new(
        pods: &Path,
        (namespace, pod, uid): (&str, &str, &str),
        container: &str,
        max_size: u64,
        max_files: usize,
    ) -> Self {
        let dir = pods
            .join(format!("{namespace}_{pod}_{uid}"))
            .join(container);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let file = File::create(&path).unwrap();
        Self {
            path,
            file,
            max_size,
            max_files: max_files.max(2),
            written: 0,
            rotations: 0,
            rotated: Vec::new(),
        }
    }

    /// The live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times it rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Writes `text` as one whole line of `stream`.
    pub fn line(&mut self, stream: &str, text: &str) {
        self.record(stream, "F", text);
    }

    /// Writes one line cut in `pieces` (all but the last tagged `P`), as the runtime writes a
    /// line longer than its buffer.
    pub fn pieces(&mut self, stream: &str, pieces: &[&str]) {
        for (i, p) in pieces.iter().enumerate() {
            let tag = if i + 1 == pieces.len() { "F" } else { "P" };
            self.record(stream, tag, p);
        }
    }

    fn record(&mut self, stream: &str, tag: &str, text: &str) {
        let now = chrono::Utc::now();
        let mut time = now.format("%Y-%m-%dT%H:%M:%S").to_string();
        let nanos = now.timestamp_subsec_nanos();
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            time.push('.');
            time.push_str(fraction.trim_end_matches('0'));
        }
        time.push('Z');
        let record = format!("{time} {stream} {tag} {text}\n");
        self.file.write_all(record.as_bytes()).unwrap();
        self.written += record.len() as u64;
        if self.written >= self.max_size {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        self.rotations += 1;
        let stamp = chrono::DateTime::from_timestamp(1_795_334_400 + self.rotations as i64, 0)
            .unwrap()
            .format("%Y%m%d-%H%M%S");
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{stamp}"));
        let rotated = PathBuf::from(name);
        std::fs::rename(&self.path, &rotated).unwrap();
        self.file = File::create(&self.path).unwrap();
        self.written = 0;
        // every rotated file but the newest is compressed
        if let Some(previous) = self.rotated.last_mut()
            && previous.extension().is_none_or(|e| e != "gz")
        {
            let mut gz = previous.clone().into_os_string();
            gz.push(".gz");
            let gz = PathBuf::from(gz);
            let mut tmp = gz.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            let bytes = std::fs::read(&*previous).unwrap();
            let mut enc = flate2::write::GzEncoder::new(
                File::create(&tmp).unwrap(),
                flate2::Compression::fast(),
            );
            enc.write_all(&bytes).unwrap();
            enc.finish().unwrap();
            std::fs::rename(&tmp, &gz).unwrap();
            std::fs::remove_file(&*previous).unwrap();
            *previous = gz;
        }
        self.rotated.push(rotated);
        while self.rotated.len() + 1 > self.max_files {
            let oldest = self.rotated.remove(0);
            let _ = std::fs::remove_file(oldest);
        }
    }
}
