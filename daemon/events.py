"""The names of the log events: what people follow with `journalctl -o cat | jq` and what
tests and bench wait for. One constant each, so the code, the tests and the docs name an event
the same way and a mistyped name is an error at import, not a wait that never ends."""

from __future__ import annotations

from typing import Final


class Event:
    """Log event names (a namespace of constants: `Event.UNIT_DONE`)."""

    # Start and stop
    WATCH_STARTED: Final = "watch started"
    INGEST_STARTED: Final = "ingest started"
    BACKFILL_STARTED: Final = "backfill started"
    STOPPING: Final = "stopping"
    STOPPED: Final = "stopped"
    STOPPED_AT_ONCE: Final = "stopped at once"
    RECOVERED_INTERRUPTED: Final = "recovered interrupted units"
    CONVERTING_AGAIN: Final = "converting again"
    BACKLOG: Final = "backlog"
    WARMED_UP: Final = "warmed up"
    FINAL_PUBLICATION_FAILED: Final = "final publication failed"
    LOOP_STEP_FAILED: Final = "loop step failed"

    # The root service (`watch --root`): its experiments
    ROOT_WATCH_STARTED: Final = "root watch started"
    EXPERIMENT_FOUND: Final = "experiment found"
    EXPERIMENT_COMPLETE: Final = "experiment complete"
    EXPERIMENT_REOPENED: Final = "experiment reopened"
    EXPERIMENT_HELD: Final = "experiment held elsewhere"
    EXPERIMENT_FAILED: Final = "experiment failed"
    EXPERIMENT_GONE: Final = "experiment gone"
    ROOT_STATE_NOT_WRITTEN: Final = "root state not written"

    # Raw data and the plan
    WAITING_FOR_RAW_DATA: Final = "waiting for raw_data"
    WAITING_FOR_METADATA: Final = "waiting for metadata"
    METADATA_REJECTED: Final = "metadata rejected"
    METADATA_CHANGED: Final = "metadata changed"
    PLAN_LOADED: Final = "plan loaded"
    DATASET_SEEN: Final = "dataset seen"
    DATASET_BROKEN: Final = "dataset broken"
    DATASET_UNREADABLE: Final = "dataset unreadable"
    ENTRY_IGNORED: Final = "entry ignored"
    CALIBRATIONS_WRITTEN: Final = "calibrations written"
    CALIBRATIONS_NOT_WRITTEN: Final = "calibrations not written"
    PSF_WRITTEN: Final = "psf written"
    PSF_NOT_WRITTEN: Final = "psf not written"
    PSF_COMPUTED: Final = "psf computed"
    PSF_CACHED: Final = "psf cached"
    PSF_CACHE_REJECTED: Final = "psf cache rejected"
    PSF_CACHE_NOT_WRITTEN: Final = "psf cache not written"

    # Units
    UNIT_STARTED: Final = "unit started"
    UNIT_DONE: Final = "unit done"
    UNIT_FAILED: Final = "unit failed"
    UNIT_REQUEUED: Final = "unit requeued"
    UNIT_SUPERSEDED: Final = "unit superseded"
    RETRY: Final = "retry"
    LEDGER_WRITE_FAILED: Final = "ledger write failed"
    WORKER_ERROR: Final = "worker error"

    # Watching and the page
    POLLING_INSTEAD: Final = "inotify unavailable, polling instead"
    OBSERVER_RESTARTED: Final = "observer restarted"
    WEB_PAGE_SERVED: Final = "web page served"
    WEB_PAGE_NOT_SERVED: Final = "web page not served"
    WEB_PAGE_PROCESS_ENDED: Final = "web page process ended"
    WEB_PAGE_PROCESS_NOT_STARTED: Final = "web page process not started"

    # Alerts
    ALERT: Final = "alert"
    ALERT_CLEARED: Final = "alert cleared"
    ALERT_REPEATED: Final = "alert repeated"
    ALERTS_NOT_EVALUATED: Final = "alerts not evaluated"
    REPORT_WRITTEN: Final = "report written"
    REPORT_NOT_WRITTEN: Final = "report not written"

    # Notifications
    NOTIFICATION_SENT: Final = "notification sent"
    NOTIFICATION_FAILED: Final = "notification failed"
