//! One job at a time on a branch, across processes: a lease in the store per repository and
//! branch (see [`crate::jobs::JobEnv::branch_lock`]).

use std::sync::Arc;
use std::time::Duration;

use super::App;

use crate::store::ClaimedJob;

/// A branch is worked on by one job at a time, across processes: a lease in the store named
/// after the repository and branch, renewed while held (it lapses with its process) and given
/// up when the job is done with it.
pub(super) fn branch_lock(app: &App, job: &ClaimedJob) -> crate::jobs::BranchLock {
    let store = app.store.clone();
    let ttl = app.cfg.lease;
    let owner = format!("job-{}-{}", job.id, job.lease_owner);
    let repo = job.repo.clone();
    Arc::new(move |branch: String| {
        let (store, owner) = (store.clone(), owner.clone());
        let name = format!("branch:{repo}:{branch}");
        Box::pin(async move {
            let mut waited = false;
            while !store.try_lease(&name, &owner, ttl).await? {
                if !waited {
                    tracing::info!(%name, "another job works on this branch; waiting for it");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let renew = {
                let (store, name, owner) = (store.clone(), name.clone(), owner.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        if let Err(e) = store.try_lease(&name, &owner, ttl).await {
                            tracing::warn!(error = %e, %name, "could not renew the branch lease");
                        }
                    }
                })
            };
            let guard: Box<dyn Send + Sync> = Box::new(BranchGuard {
                store,
                name,
                owner,
                renew,
            });
            Ok(guard)
        })
    })
}

/// Gives the branch up when the job is done with it (or stops at any `.await`).
struct BranchGuard {
    store: crate::store::Store,
    name: String,
    owner: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for BranchGuard {
    fn drop(&mut self) {
        self.renew.abort();
        let (store, name, owner) = (self.store.clone(), self.name.clone(), self.owner.clone());
        tokio::spawn(async move {
            if let Err(e) = store.release_lease(&name, &owner).await {
                tracing::warn!(error = %e, %name, "could not release the branch lease; it lapses");
            }
        });
    }
}
