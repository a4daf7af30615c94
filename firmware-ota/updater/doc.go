// Package updater is the gateway side of OTA updates: an explicit,
// persisted state machine (in the manner of Mender's app/state.go) that
// takes an OTA notice from the hub, downloads, verifies and installs the
// signed artifact, restarts into it, waits for the new version to prove
// itself healthy and otherwise rolls back by itself. A supervisor
// (Supervisor) restarts the worker process into the new binary, with or
// without systemd.
//
// # Trust
//
// A notice (protocol.OTANotice) is accepted only if its signed manifest
// verifies with the release keys (manifest.VerifyManifest; not the hub's
// key), the manifest's version is the notice's release, its target runs on
// this host (manifest.CheckTarget) and its version is higher than the
// running one, unless the rollout allows a downgrade. A development build
// ("dev") is below every release. Without any release key every notice is
// refused ("no release key configured"). Refusals are reported as failed
// with the reason and judged again when the notice comes back (the keys
// may have been configured since). The notice of the version already
// running is reported succeeded at once.
//
// # States
//
//	idle ─► downloading ─► verifying ─► installing ─► restarting ─► trial ─► succeeded
//	             │              │                                     │
//	             └──────────────┴─► failed                            └─► rolled_back
//
// downloading: GET notice.URL over HTTPS (the hub's CA), Authorization:
// Bearer <device token>, into StateDir/download.part; after a cut or a
// crash it resumes with a Range request from the bytes the state file says
// were synced (the file is fsynced and the count recorded at each progress
// report, every ProgressInterval). Transient errors are retried with
// backoff for as long as the notice stands; 400/403/404/410 and a size the
// manifest does not state are permanent.
//
// verifying: the manifest is verified again and the download is copied to
// BIN.new next to the binary (same directory), checking with
// manifest.CheckArtifact the very bytes written; BIN.new is fsynced, mode
// 0755. A wrong size or digest fails the update and removes both files.
//
// installing: BIN.prev becomes a hard link to BIN (so BIN never
// disappears), BIN.new is renamed over BIN, the directory is fsynced. A
// crash here is resolved at the next start by checking whether BIN already
// has the new digest.
//
// restarting: Run returns ErrRestart; the worker exits with ExitRestart
// (75) and its supervisor starts the binary now in place.
//
// trial: the first start of the new version (New sees restarting and the
// release running) counts a trial boot in the state file, then publishes
// its succeeded status (fw = the new version). Healthy means connected to
// the hub and that status acknowledged (PUBACK) within HealthTimeout. If
// not, the worker renames BIN.prev back over BIN, records rolled_back with
// the reason and exits 75 into the previous version, which reports it. A
// new version that dies before it is healthy is rolled back by the
// supervisor as soon as it exits (RollbackAfterExit), or, without the
// supervisor, at its next start, when the trial boot counter passes one. A
// clean shutdown during the trial does not count. A power cut during the
// trial therefore rolls back: a version that never proved itself is not
// trusted.
//
// The same notice again (it is retained, so it comes with every
// reconnection) never installs twice: during an update it is ignored,
// after one the outcome is reported again. An empty retained notice
// withdraws it and a notice for another rollout or release supersedes it;
// either cancels a download or verification in progress (failed, with the
// reason). Once installing has begun, the update runs to its end.
//
// # State file
//
// StateDir/state.json, replaced atomically (temporary file, fsync, rename,
// fsync of the directory) at every change, e.g.:
//
//	{
//	  "schema": 1,                 // StateSchema; another schema is moved aside to state.json.bad
//	  "phase": "downloading",      // one of the phases above
//	  "seq": 7,                    // incremented at every phase change
//	  "rollout": "r-2026-03-01", "release": "1.4.0", "from": "1.3.2",
//	  "url": "https://hub:8443/api/v1/ota/artifacts/<sha256>",
//	  "manifest": { ...the signed envelope, verified again at each use... },
//	  "sha256": "<64 hex>", "total": 12345678, "bytes": 4194304,
//	  "reason": "",                // why it failed or was rolled back
//	  "refused": false,            // failed before anything was downloaded
//	  "trial_boots": 0,            // starts of the new version in trial
//	  "changed": "2026-03-01T12:00:00Z",
//	  "report": { ...protocol.OTAStatus not yet acknowledged by the hub... },
//	  "backlog": [ ...unacknowledged last statuses of earlier rollouts... ]
//	}
//
// Fields are only ever added within a schema, and readers ignore fields
// they do not know, so the previous version can read what the new one
// wrote (a rollback needs that).
//
// # Reports
//
// Every phase change is reported on ota/status (QoS 1) with rollout,
// release, state (trial is not reported; succeeded ends it), bytes/total,
// reason and fw (the version running when it is sent). While downloading,
// progress is reported every ProgressInterval. A status is kept in the
// state file until the hub acknowledged it, so states reached offline, and
// a rollback's, are reported after the reconnection or the restart; per
// rollout only the newest status is sent.
//
// # Supervisor
//
// Supervisor runs the worker ("outpost-gateway run --worker ...") as a
// child process from a path resolved once, and starts it again from that
// path when it exits: at once after ExitRestart (so a binary renamed in is
// picked up), otherwise after a backoff (1 s doubling to 30 s, reset after
// a minute of running). It forwards SIGTERM and SIGINT and exits with the
// worker after one; on Linux the worker dies with the supervisor
// (PR_SET_PDEATHSIG). Under systemd the unit runs the supervisor too.
package updater
