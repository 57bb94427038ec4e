"""The site's own job kind: the demo's orchestration (memicos_site/demo.py)."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

job_kind_register(JobKind(name="demo", queue=Queue.GPU_BATCH, run="memicos_site.demo.demo_run"))
job_kind_register(JobKind(name="demo_graphs", queue=Queue.GPU_BATCH, run="memicos_site.demo.demo_graphs_run"))
