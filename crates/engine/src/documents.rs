//! The engine's own documents as JSON, for code that reads them whole (the host security
//! checks): `/info`, image inspect documents and the network list.

use crate::{Engine, Error};

fn encode<T: serde::Serialize>(what: &str, value: T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Api {
        status: 0,
        message: format!("cannot encode the engine's {what}: {e}"),
    })
}

impl Engine {
    /// `GET /info`, as JSON.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn info_json(&self) -> Result<serde_json::Value, Error> {
        let info = self.client()?.info().await.map_err(|e| self.classify(e))?;
        encode("/info", info)
    }

    /// An image's inspect document, as JSON; `Ok(None)` when the engine does not have it.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn inspect_image_json(&self, name: &str) -> Result<Option<serde_json::Value>, Error> {
        self.image_document(name)
            .await?
            .map(|i| encode("image inspect document", i))
            .transpose()
    }

    /// Every volume, as the engine lists them (JSON).
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn volumes_json(&self) -> Result<Vec<serde_json::Value>, Error> {
        let list = self
            .client()?
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(|e| self.classify(e))?;
        list.volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| encode("volume list", v))
            .collect()
    }

    /// Every network, as the engine lists them (JSON).
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn networks_json(&self) -> Result<Vec<serde_json::Value>, Error> {
        let networks = self
            .client()?
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| self.classify(e))?;
        networks
            .into_iter()
            .map(|n| encode("network list", n))
            .collect()
    }
}
