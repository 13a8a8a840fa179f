//! The content of a config or secret as it travels from the CLI to the daemon: text as is,
//! anything else (a keystore, a certificate in DER) as base64.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A config's or secret's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum FileContent {
    /// UTF-8 text, sent as a JSON string.
    Text(String),
    /// Any bytes, sent as `{"base64": "..."}`.
    Binary { base64: String },
}

impl FileContent {
    /// Text when the bytes are UTF-8, base64 otherwise.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Self::Text(text),
            Err(e) => Self::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            },
        }
    }

    /// The bytes.
    ///
    /// # Errors
    /// Base64 that does not decode.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self {
            Self::Text(t) => Ok(t.as_bytes().to_vec()),
            Self::Binary { base64 } => base64::engine::general_purpose::STANDARD.decode(base64),
        }
    }
}

impl From<String> for FileContent {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_bytes_survive_the_trip() {
        let text = FileContent::from_bytes(b"hello\n".to_vec());
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""hello\n""#);
        let raw = vec![0_u8, 159, 146, 150, 255];
        let binary = FileContent::from_bytes(raw.clone());
        let json = serde_json::to_string(&binary).unwrap();
        assert!(json.starts_with(r#"{"base64":"#), "{json}");
        let back: FileContent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes().unwrap(), raw);
        let bad: FileContent = serde_json::from_str(r#"{"base64":"%%%"}"#).unwrap();
        assert!(bad.bytes().is_err());
    }
}
