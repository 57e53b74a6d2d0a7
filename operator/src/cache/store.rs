//! The records in the API server: load (ours and what others list us in), save (create, or
//! replace with the resourceVersion read, retried on conflicts) and delete with preconditions.

use kube::api::{PostParams, Preconditions};

use chrono::Utc;
use futures::{StreamExt, stream};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use tracing::{debug, info, warn};

use crate::{Result, ResultExt as _, is_not_found, objects::FIELD_MANAGER};

use super::policy::*;
use super::record::*;

/// Tries of one record write when other writers keep changing it (409).
pub const WRITE_TRIES: usize = 4;

/// Writes and deletes in flight at once.
pub const CONCURRENCY: usize = 8;

/// Records per list page.
pub const PAGE: u32 = 500;

/// An ImageRecord as a list returns it, parsed without its `managedFields` (a record written
/// by its create and its status update carries several KiB of them: at 2,000 records most of
/// what a loaded cache held, measured in issue 14; at 20,000 over 100 MiB).
#[derive(Clone, Debug, serde::Deserialize)]
struct Listed {
    #[serde(default, deserialize_with = "crate::objects::meta::without_managed_fields")]
    metadata: kube::api::ObjectMeta,
    spec: ImageRecordSpec,
    #[serde(default)]
    status: Option<ImageRecordStatus>,
}

impl kube::Resource for Listed {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        ImageRecord::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        ImageRecord::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        ImageRecord::version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        ImageRecord::plural(dt)
    }
    fn meta(&self) -> &kube::api::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        &mut self.metadata
    }
}

impl From<Listed> for ImageRecord {
    fn from(l: Listed) -> Self {
        ImageRecord {
            metadata: l.metadata,
            spec: l.spec,
            status: l.status,
        }
    }
}

/// Every record, page by page, sorted by whose it is ([`split`]).
pub async fn load(client: &Client, settings_hash: &str, release: &str) -> Result<Loaded> {
    let api: Api<Listed> = Api::all(client.clone());
    let mut loaded = Loaded::default();
    let now = Utc::now();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api
            .list(&params)
            .await
            .context(|| "listing ImageRecords".into())?;
        let records = page.items.into_iter().map(ImageRecord::from).collect();
        split(&mut loaded, records, settings_hash, release, now);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    debug!(
        own = loaded.own.len(),
        expired = loaded.expired.len(),
        "image records loaded"
    );
    Ok(loaded)
}

/// Writes each update as `release`: a create when the record is absent, else a replace with
/// the resourceVersion read, read again and retried on 409 (another release wrote it meanwhile),
/// so no writer loses another's entry. Every update is tried; the error names the first failure
/// and how many failed.
pub async fn save(client: &Client, release: &str, updates: Vec<Update>) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let total = updates.len();
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(updates)
        .map(|u| {
            let api = &api;
            async move {
                let result = save_one(api, release, &u).await;
                (u.name, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    first_failure(results, total, "writing")
}

pub async fn save_one(
    api: &Api<ImageRecord>,
    release: &str,
    u: &Update,
) -> std::result::Result<(), kube::Error> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut current = u.current.clone();
    let mut known = current.is_some();
    for _ in 0..WRITE_TRIES {
        if !known {
            current = api.get_opt(&u.name).await?;
        }
        let Some(spec) = changed(current.as_ref().map(|r| &r.spec), &u.change, release) else {
            return Ok(());
        };
        let mut body = with_meta(&u.name, spec);
        let written = match &current {
            None => api.create(&pp, &body).await,
            Some(cur) => {
                body.metadata.resource_version = cur.metadata.resource_version.clone();
                api.replace(&u.name, &pp, &body).await
            }
        };
        match written {
            Ok(_) => return Ok(()),
            // AlreadyExists, a stale resourceVersion, or gone meanwhile: read it and try again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => known = false,
            Err(e) => return Err(e),
        }
    }
    debug!(record = %u.name, "image record kept changing under us; left for the next cycle");
    Ok(())
}

/// Writes the status (what the Job found) of records just saved: a merge patch of the status
/// subresource that replaces every field of it (absent ones are removed, so no field of an
/// earlier Job's result survives). Every write is tried; the error names the first failure.
pub async fn save_status(client: &Client, statuses: Vec<(String, ImageRecordStatus)>) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let total = statuses.len();
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(statuses)
        .map(|(name, status)| {
            let (api, pp) = (&api, &pp);
            async move {
                let patch = Patch::Merge(serde_json::json!({ "status": status_patch(&status) }));
                let result = api.patch_status(&name, pp, &patch).await.map(|_| ());
                (name, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    first_failure(results, total, "writing the status of")
}

/// The status as a merge patch: every field, `null` for those it does not set.
pub fn status_patch(status: &ImageRecordStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).expect("a status serialises");
    let fields = serde_json::to_value(ImageRecordStatus::every_field()).expect("a status serialises");
    if let (Some(map), Some(all)) = (value.as_object_mut(), fields.as_object()) {
        for key in all.keys() {
            map.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    value
}

/// Deletes records by (name, resourceVersion read): one already gone, or changed since it was
/// read (another release just used it), is left alone.
pub async fn delete(client: &Client, records: &[(String, Option<String>)]) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(records)
        .map(|(name, version)| {
            let api = &api;
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: version.clone(),
                        uid: None,
                    }),
                    ..Default::default()
                };
                let result = match api.delete(name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e),
                };
                (name.clone(), result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if !records.is_empty() {
        info!(records = records.len(), "image records collected");
    }
    first_failure(results, records.len(), "deleting")
}

pub fn first_failure(
    results: Vec<(String, std::result::Result<(), kube::Error>)>,
    total: usize,
    verb: &str,
) -> Result<()> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let mut first = None;
    // A few named failures tell what went wrong; a missing CRD or RBAC rule fails them all.
    for (name, e) in results
        .into_iter()
        .filter_map(|(n, r)| Some((n, r.err()?)))
        .take(3)
    {
        warn!(record = %name, error = %e, "{verb} ImageRecord failed");
        first.get_or_insert((name, e));
    }
    match first {
        None => Ok(()),
        Some((name, e)) => {
            Err(e).context(|| format!("{verb} ImageRecord {name} ({failed} of {total} failed)"))
        }
    }
}
