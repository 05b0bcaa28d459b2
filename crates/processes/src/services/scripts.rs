//! The option script runtime: the options in force for one process run, from the option script
//! TempCardsScriptOptions.
//!
//! The compiled script is cached per server; before each run only the number of the version in
//! force is read, so a save on any server takes effect on every server at its next run.

use std::sync::Mutex;

use cardwright_scripts::{CompiledScript, ScriptContext, ScriptEngine, ScriptOptions};
use cardwright_storage::{scripts, Conn};

use cardwright_domain::temp_cards::OPTION_SCRIPT as SCRIPT_NAME;

use crate::ProcessError;

/// Certificate profiles a script may name (those of the built-in certificate authority).
pub const CERTIFICATE_PROFILES: [&str; 2] = ["authentication", "signature"];

/// The sandboxed engine and the compiled script in force.
#[derive(Debug)]
pub struct ScriptRuntime {
    pub engine: ScriptEngine,
    cache: Mutex<Option<(i64, CompiledScript)>>,
}

impl Default for ScriptRuntime {
    fn default() -> Self {
        Self {
            engine: ScriptEngine::new(
                CERTIFICATE_PROFILES
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect(),
            ),
            cache: Mutex::new(None),
        }
    }
}

/// The options of one run and where they came from.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub options: ScriptOptions,
    /// The script version that gave them (0: no script saved, the shipped defaults).
    pub version: i64,
    /// Set when the script failed for this run and the shipped defaults were used instead.
    pub error: Option<String>,
}

impl RunOptions {
    /// The options as recorded with the run's audit event.
    pub fn to_json(&self) -> serde_json::Value {
        let o = &self.options;
        let mut value = serde_json::json!({
            "script_version": self.version,
            "pin_length": o.pin_length,
            "puk_length": o.puk_length,
            "encode": o.encode,
            "certificates": o.certificates,
            "validity_days": o.validity_days,
            "max_active_per_person": o.max_active_per_person,
            "remind_days_before": o.remind_days_before,
            "desk_email": o.desk_email,
            "mail_language": o.mail_language,
            "on_person_deactivated": o.on_person_deactivated,
        });
        if let Some(error) = &self.error {
            value["script_error"] = serde_json::Value::String(error.clone());
        }
        value
    }
}

impl ScriptRuntime {
    fn cached(&self, version: i64) -> Option<CompiledScript> {
        let cache = self.cache.lock().ok()?;
        cache
            .as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, s)| s.clone())
    }

    /// The compiled script in force, compiling it only when its version changed.
    async fn compiled(
        &self,
        conn: &mut Conn,
        version: Option<i64>,
    ) -> Result<Option<(i64, CompiledScript)>, ProcessError> {
        let Some(version) = version else {
            return Ok(None);
        };
        if let Some(script) = self.cached(version) {
            return Ok(Some((version, script)));
        }
        let Some(saved) = scripts::get(conn, SCRIPT_NAME, version).await? else {
            return Ok(None);
        };
        let script = self.engine.compile(&saved.source).map_err(|e| {
            ProcessError::Internal(format!(
                "stored option script version {version} does not compile: {e}"
            ))
        })?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((version, script.clone()));
        }
        Ok(Some((version, script)))
    }

    /// The options for one run. A script that fails at run time never stops the process: the
    /// shipped defaults apply and the failure is recorded with the run.
    pub async fn for_run(
        &self,
        conn: &mut Conn,
        template: &str,
        process: &str,
        operator: &str,
    ) -> Result<RunOptions, ProcessError> {
        let version = scripts::current_version(&mut *conn, SCRIPT_NAME).await?;
        self.for_run_at(conn, version, template, process, operator)
            .await
    }

    /// [`Self::for_run`] when the caller read the number of the version in force already
    /// (`None`: no script saved), in the same transaction.
    pub async fn for_run_at(
        &self,
        conn: &mut Conn,
        version: Option<i64>,
        template: &str,
        process: &str,
        operator: &str,
    ) -> Result<RunOptions, ProcessError> {
        let Some((version, script)) = self.compiled(conn, version).await? else {
            return Ok(RunOptions {
                options: ScriptOptions::default(),
                version: 0,
                error: None,
            });
        };
        let context = ScriptContext {
            template,
            process,
            operator,
        };
        match self.engine.evaluate(&script, &context) {
            Ok(options) => Ok(RunOptions {
                options,
                version,
                error: None,
            }),
            Err(e) => {
                tracing::error!(error = %e, template, process, "option script failed; the defaults apply");
                Ok(RunOptions {
                    options: ScriptOptions::default(),
                    version,
                    error: Some(e.to_string()),
                })
            }
        }
    }
}
