//! The watcher's own figures on `/metrics`: registry requests by kind, images watched, updates
//! on offer, failed checks.

use capstan_model::Exposition;

use crate::WatchState;

impl WatchState {
    /// Writes the watcher's figures.
    pub fn render(&self, out: &mut Exposition) {
        let snapshot = self.snapshot();
        out.family(
            "capstan_registry_requests_total",
            "counter",
            "Requests made to registries to check for updates, by kind.",
        );
        for (kind, n) in &snapshot.requests {
            out.sample(
                "capstan_registry_requests_total",
                &[("kind", kind)],
                *n as f64,
            );
        }
        out.single(
            "capstan_images_watched",
            "gauge",
            "Images watched for updates.",
            snapshot.updates.len() as f64,
        );
        out.single(
            "capstan_image_updates_available",
            "gauge",
            "Watched images with an update on offer.",
            snapshot.updates.iter().filter(|u| u.has_update()).count() as f64,
        );
        out.single(
            "capstan_image_checks_failed",
            "gauge",
            "Watched images whose last check failed.",
            snapshot
                .updates
                .iter()
                .filter(|u| u.error.is_some())
                .count() as f64,
        );
    }
}
