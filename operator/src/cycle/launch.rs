//! Step 3, launch: a Job is created suspended, its config Secret owned by it, then resumed, so a
//! credential Secret never exists without the Job that deletes it (manifests: [`crate::objects`]).

use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Result, ResultExt as _, is_not_found,
    objects::{self, CREATED_BY_ANNOTATION, JobPlan, SETTINGS_HASH_ANNOTATION},
};

use super::{context::Context, job_state};

/// Creates the Job suspended, then its config Secret owned by it, then resumes it. At no instant
/// is there a credential Secret without an owner: whatever fails in between, deleting the Job
/// takes the Secret with it (garbage collection), and a suspended Job starts no pod that could
/// wait for its volume. A Job left suspended by a crash is settled by [`super::settle::adopt`].
pub async fn launch(ctx: &Context, plan: &JobPlan) -> Result<Job> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pp = PostParams {
        field_manager: Some(objects::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut manifest = objects::job(plan, &ctx.namespace, &ctx.settings.ops.release, &ctx.settings.job);
    let annotations = manifest.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(
        SETTINGS_HASH_ANNOTATION.into(),
        ctx.identity.settings_hash.clone(),
    );
    // Which replica (the Lease holder) made it: two holders at once would show here.
    annotations.insert(CREATED_BY_ANNOTATION.into(), ctx.instance.clone());
    let job = match jobs.create(&pp, &manifest).await {
        Ok(job) => job,
        Err(e) => match jobs.get_opt(&plan.name).await {
            // The create went through although its answer was lost (a timeout, a broken
            // connection): go on with it.
            Ok(Some(job)) if job.metadata.labels == manifest.metadata.labels => {
                warn!(job = %plan.name, error = %e, "creating the Job reported an error, but it exists; going on with it");
                job
            }
            // No Secret exists yet: nothing to clean up. A suspended Job whose creation did go
            // through is settled by the next cycle's adoption.
            _ => return Err(e).context(|| format!("creating Job {}/{}", ctx.namespace, plan.name)),
        },
    };
    let owner = objects::owned_by_job(
        &job_state::name(&job),
        job.metadata.uid.as_deref().unwrap_or_default(),
    );
    if let Err(e) = secrets
        .create(
            &pp,
            &objects::secret(plan, &ctx.namespace, &ctx.settings.ops.release, owner),
        )
        .await
    {
        // Should the Secret exist after all (a lost answer), it goes with its Job.
        abandon(ctx, &plan.name).await;
        return Err(e).context(|| format!("creating Secret {}/{}", ctx.namespace, plan.name));
    }
    let job = match resume(ctx, &plan.name).await {
        Ok(job) => job,
        Err(e) => {
            abandon(ctx, &plan.name).await;
            return Err(e).context(|| format!("resuming Job {}/{}", ctx.namespace, plan.name));
        }
    };
    info!(job = %plan.name, images = plan.images.len(), "Job created");
    Ok(job)
}

/// Lets a suspended Job start its pod.
pub async fn resume(ctx: &Context, job_name: &str) -> kube::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let patch = Patch::Merge(json!({ "spec": { "suspend": false } }));
    jobs.patch(job_name, &PatchParams::default(), &patch).await
}

/// Deletes a Job that never ran; its Secret, if any, is collected with it. A failure is only
/// logged: the Job stays suspended and the next cycle's [`super::settle::adopt`] deletes it.
pub async fn abandon(ctx: &Context, job_name: &str) {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match jobs.delete(job_name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            warn!(job = %job_name, error = %e, "could not delete the unstarted Job; the next cycle does")
        }
    }
}
