"""The pure domain: jobs, their states and legal transitions, retry backoff, submissions.

No I/O, no threads, no clocks: `now` is always passed in.
"""

from workstream.jobs.model import Job, JobContext, JobStatus
from workstream.jobs.spec import JobSpec

__all__ = ["Job", "JobContext", "JobSpec", "JobStatus"]
