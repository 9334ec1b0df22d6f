//! The Docker runtime: each database is a named volume (its home, holding
//! the SQLite file) and a hardened container from the worker image with the
//! volume at /data. Sessions are attached `docker exec`s of the worker.
//!
//! Everything is labelled, so the gateway's whole view can be rebuilt from
//! Docker at any time: a restarted gateway re-adopts every database.

use std::collections::HashMap;
use std::io;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::{Container, DbSettings, Instance, Runtime, RuntimeError, SessionArgs, SessionIo};
use crate::config::{Config, Synchronous};
use crate::names::DbName;

/// Marks every object DB-Forge creates (what `make clean` sweeps).
pub const LABEL_MANAGED: &str = "dbforge.managed";
/// The gateway namespace an object belongs to.
pub const LABEL_NAMESPACE: &str = "dbforge.namespace";
/// The database an object belongs to.
pub const LABEL_DB: &str = "dbforge.db";
/// The database's `synchronous` setting (on its volume).
pub const LABEL_SYNCHRONOUS: &str = "dbforge.synchronous";
/// The database's size quota in bytes (on its volume).
pub const LABEL_MAX_BYTES: &str = "dbforge.max-bytes";

/// Where the volume is mounted in the container.
const DATA_DIR: &str = "/data";
/// The SQLite file inside the volume.
const DB_PATH: &str = "/data/db.sqlite3";
/// The unprivileged user the worker runs as (`nobody`); the image's /data
/// belongs to it, so a new volume does too.
const WORKER_USER: &str = "65534:65534";
/// Seconds `docker stop` waits after SIGTERM. The worker exits on SIGTERM at
/// once, so this is only a bound for a wedged one.
const STOP_TIMEOUT_SECS: i64 = 5;
/// Size of SQLite's temp-file tmpfs (large sorts, temp tables).
const TMPFS_OPTIONS: &str = "rw,nosuid,nodev,noexec,size=64m";
/// Quota of a volume whose label is missing or unreadable (1 GiB, the
/// default quota of a new database).
const UNLABELLED_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// First size of an exec's output buffer; it grows for larger frames. Kept
/// small: every open session holds one.
const EXEC_OUTPUT_CAPACITY: usize = 16 * 1024;

/// The Docker implementation of [`Runtime`].
pub struct DockerRuntime {
    /// Connected lazily and version-negotiated once, so the gateway starts
    /// (and reports unhealthy) while Docker is down.
    client: OnceCell<Docker>,
    /// Where Docker is; `None`: its defaults.
    host: Option<String>,
    namespace: String,
    image: String,
    extra_labels: Vec<(String, String)>,
    memory_bytes: i64,
    pids: i64,
    nano_cpus: i64,
}

impl DockerRuntime {
    /// A runtime for `config`; does not touch Docker yet.
    pub fn new(config: &Config) -> DockerRuntime {
        DockerRuntime {
            client: OnceCell::new(),
            host: config.docker_host.clone(),
            namespace: config.namespace.clone(),
            image: config.worker_image.clone(),
            extra_labels: config.labels.clone(),
            memory_bytes: (config.container_memory_mb * 1024 * 1024) as i64,
            pids: config.container_pids,
            nano_cpus: (config.container_cpus * 1e9) as i64,
        }
    }

    async fn docker(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match &self.host {
                    Some(host) => Docker::connect_with_host(host),
                    None => Docker::connect_with_defaults(),
                }
                .map_err(unavailable)?;
                docker.negotiate_version().await.map_err(unavailable)
            })
            .await
    }

    /// Container and volume name of a database.
    fn object_name(&self, name: &DbName) -> String {
        format!("{}-{}", self.namespace, name)
    }

    fn labels(&self, name: &DbName) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self.extra_labels.iter().cloned().collect();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_NAMESPACE.into(), self.namespace.clone());
        labels.insert(LABEL_DB.into(), name.to_string());
        labels
    }

    fn owns(&self, labels: &HashMap<String, String>, name: &DbName) -> bool {
        labels.get(LABEL_NAMESPACE) == Some(&self.namespace)
            && labels.get(LABEL_DB).map(String::as_str) == Some(name.as_str())
    }

    fn namespace_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_NAMESPACE}={}", self.namespace)],
        )])
    }

    async fn inspect_container(&self, name: &DbName) -> Result<Option<Container>, RuntimeError> {
        let docker = self.docker().await?;
        match docker
            .inspect_container(&self.object_name(name), None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => {
                let labels = c.config.as_ref().and_then(|c| c.labels.clone());
                if !self.owns(&labels.unwrap_or_default(), name) {
                    return Err(RuntimeError::Failed(format!(
                        "a container named {} exists that DB-Forge does not own",
                        self.object_name(name)
                    )));
                }
                let state = c
                    .state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Ok(Some(Container {
                    id: c.id.unwrap_or_default(),
                    state,
                }))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    fn container_body(&self, name: &DbName) -> ContainerCreateBody {
        let volume = self.object_name(name);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(vec!["idle".into()]),
            user: Some(WORKER_USER.into()),
            labels: Some(self.labels(name)),
            network_disabled: Some(true),
            stop_timeout: Some(STOP_TIMEOUT_SECS),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{DATA_DIR}:rw")]),
                readonly_rootfs: Some(true),
                network_mode: Some("none".into()),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(self.memory_bytes),
                memory_swap: Some(self.memory_bytes),
                pids_limit: Some(self.pids),
                nano_cpus: Some(self.nano_cpus),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_string(),
                    TMPFS_OPTIONS.to_string(),
                )])),
                // The gateway wakes a stopped database on demand, so Docker
                // need not restart it: after a host reboot only the
                // databases in use come back, and a killed worker is
                // restarted by the next request, not raced by Docker.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        docker.ping().await.map(drop).map_err(unavailable)
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        let docker = self.docker().await?;
        let volumes = docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(self.namespace_filter()),
            }))
            .await
            .map_err(failed)?;
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.namespace_filter()),
                ..Default::default()
            }))
            .await
            .map_err(failed)?;
        let mut by_db: HashMap<String, Container> = HashMap::new();
        for c in containers {
            let Some(db) = c.labels.as_ref().and_then(|l| l.get(LABEL_DB)).cloned() else {
                continue;
            };
            by_db.insert(
                db,
                Container {
                    id: c.id.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                },
            );
        }
        let mut out = Vec::new();
        for v in volumes.volumes.unwrap_or_default() {
            let Some(name) = v.labels.get(LABEL_DB).and_then(|n| DbName::parse(n).ok()) else {
                continue;
            };
            out.push(Instance {
                container: by_db.remove(name.as_str()),
                settings: settings_from_labels(&v.labels),
                created: v.created_at.clone(),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn find(&self, name: &DbName) -> Result<Option<Instance>, RuntimeError> {
        let docker = self.docker().await?;
        let volume = match docker.inspect_volume(&self.object_name(name)).await {
            Ok(v) if self.owns(&v.labels, name) => v,
            Ok(_) => return Ok(None),
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        Ok(Some(Instance {
            name: name.clone(),
            settings: settings_from_labels(&volume.labels),
            created: volume.created_at,
            container: self.inspect_container(name).await?,
        }))
    }

    async fn create_home(
        &self,
        name: &DbName,
        settings: DbSettings,
    ) -> Result<DbSettings, RuntimeError> {
        let docker = self.docker().await?;
        let mut labels = self.labels(name);
        labels.insert(
            LABEL_SYNCHRONOUS.into(),
            settings.synchronous.as_str().into(),
        );
        labels.insert(LABEL_MAX_BYTES.into(), settings.max_bytes.to_string());
        // Creating a volume that exists returns the existing one, labels and all.
        let volume = docker
            .create_volume(VolumeCreateRequest {
                name: Some(self.object_name(name)),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        if !self.owns(&volume.labels, name) {
            return Err(RuntimeError::Failed(format!(
                "a volume named {} exists that DB-Forge does not own",
                volume.name
            )));
        }
        Ok(settings_from_labels(&volume.labels))
    }

    async fn start(&self, name: &DbName) -> Result<(Container, bool), RuntimeError> {
        let docker = self.docker().await?;
        let object = self.object_name(name);
        let (mut container, created) = match self.inspect_container(name).await? {
            Some(c) => (c, false),
            None => {
                // A container is only made for a database with a home
                // (Docker would otherwise create an empty volume for it).
                if self.find(name).await?.is_none() {
                    return Err(RuntimeError::NotFound);
                }
                let options = CreateContainerOptions {
                    name: Some(object.clone()),
                    ..Default::default()
                };
                match docker
                    .create_container(Some(options), self.container_body(name))
                    .await
                {
                    Ok(r) => (
                        Container {
                            id: r.id,
                            state: "created".into(),
                        },
                        true,
                    ),
                    // Created meanwhile by someone else: use that one.
                    Err(e) if status(&e) == Some(409) => {
                        match self.inspect_container(name).await? {
                            Some(c) => (c, false),
                            None => return Err(failed(e)),
                        }
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
        };
        match container.state.as_str() {
            "running" => {}
            // Someone paused it (`docker pause`): a paused container takes
            // no exec, so resume it.
            "paused" => match docker.unpause_container(&object).await {
                Ok(()) => container.state = "running".into(),
                Err(e) => return Err(failed(e)),
            },
            _ => {
                match docker.start_container(&object, None).await {
                    Ok(()) => {}
                    Err(e) if status(&e) == Some(304) => {}
                    Err(e) => return Err(failed(e)),
                }
                container.state = "running".into();
            }
        }
        Ok((container, created))
    }

    async fn remove_container(&self, name: &DbName) -> Result<bool, RuntimeError> {
        let docker = self.docker().await?;
        if self.inspect_container(name).await?.is_none() {
            return Ok(false);
        }
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            ..Default::default()
        };
        match docker
            .remove_container(&self.object_name(name), Some(options))
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    async fn destroy(&self, name: &DbName) -> Result<bool, RuntimeError> {
        let docker = self.docker().await?;
        if self.find(name).await?.is_none() {
            return Ok(false);
        }
        self.remove_container(name).await?;
        match docker
            .remove_volume(
                &self.object_name(name),
                Some(RemoveVolumeOptions { force: true }),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    async fn open_session(
        &self,
        name: &DbName,
        args: &SessionArgs,
    ) -> Result<SessionIo, RuntimeError> {
        let docker = self.docker().await?;
        let exec = docker
            .create_exec(
                &self.object_name(name),
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(args.command(DB_PATH)),
                    ..Default::default()
                },
            )
            .await
            .map_err(exec_error)?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(EXEC_OUTPUT_CAPACITY),
                }),
            )
            .await
            // The container may stop between creating the exec and starting it.
            .map_err(exec_error)?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Failed("exec started detached".into()));
        };
        let db = name.to_string();
        let output = output.filter_map(move |frame| {
            let item = match frame {
                Ok(bollard::container::LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    tracing::warn!(db = %db, worker_stderr = %String::from_utf8_lossy(&message).trim_end(), "worker diagnostic");
                    None
                }
                Ok(_) => None,
                Err(e) => Some(Err(io::Error::other(e))),
            };
            std::future::ready(item)
        });
        Ok(SessionIo {
            output: Box::pin(output),
            input,
        })
    }
}

fn settings_from_labels(labels: &HashMap<String, String>) -> DbSettings {
    DbSettings {
        synchronous: labels
            .get(LABEL_SYNCHRONOUS)
            .and_then(|s| Synchronous::parse(s))
            .unwrap_or(Synchronous::Full),
        max_bytes: labels
            .get(LABEL_MAX_BYTES)
            .and_then(|s| s.parse().ok())
            .unwrap_or(UNLABELLED_MAX_BYTES),
    }
}

/// Errors of creating or starting an exec: 409 means the container is not
/// running, 404 that it is gone; both are woken by the caller. Starting an
/// exec in a container that stopped a moment ago can also come back as a 500
/// "is not running" (Docker 20.10), which means the same.
fn exec_error(e: DockerError) -> RuntimeError {
    match &e {
        DockerError::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        } => RuntimeError::NotRunning,
        DockerError::DockerResponseServerError { message, .. }
            if message.contains("is not running") || message.contains("No such container") =>
        {
            RuntimeError::NotRunning
        }
        _ => failed(e),
    }
}

fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A Docker answer that is an error is a failure; anything else (connection
/// refused, socket missing, timeout) means Docker cannot be reached.
fn failed(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError { message, .. } => RuntimeError::Failed(message),
        other => unavailable(other),
    }
}

fn unavailable(e: DockerError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}
