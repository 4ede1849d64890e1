//! Previews (PreviewOperationTask): what a repair would change on an instance, planned by its
//! connector without changing anything. Instances reached directly are planned here, at once;
//! those reached through an agent are asked of it (see `agents.rs`), and its answer is stored
//! in the form below.

use connectors::ConnectorError;
use model::{Change, PlannedChange};
use store::Instance;

use crate::Engine;

/// An answer to a preview, as stored: what would change, or why it could not be planned
/// (code, message).
pub type PreviewAnswer = Result<Vec<PlannedChange>, (String, String)>;

/// The stored form of an answer.
pub fn preview_answer_json(answer: &Result<Vec<PlannedChange>, ConnectorError>) -> String {
    let answer: PreviewAnswer = answer.clone().map_err(|e| (e.code.to_string(), e.message));
    serde_json::to_string(&answer).unwrap_or_default()
}

/// An answer as stored; one that does not decode is an error of its own.
pub fn preview_answer_of(json: &str) -> PreviewAnswer {
    serde_json::from_str(json).map_err(|e| ("PreviewAnswerCorrupt".to_string(), e.to_string()))?
}

impl Engine {
    /// What `change` would change on an instance this node reaches itself (not through an
    /// agent), planned by the instance's connector.
    pub fn preview(&self, instance: &Instance, change: &Change) -> Result<Vec<PlannedChange>, ConnectorError> {
        let connector = self.connector(&instance.connector).ok_or_else(|| {
            ConnectorError::new("ConnectorNotFound", format!("no connector reaches {} assets", instance.connector))
        })?;
        connector.preview(&self.target(instance)?, change)
    }
}
