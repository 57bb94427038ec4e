"""Inference-app models: only a proxy of features.Job, so the admin can offer the SAE pipeline form."""

from features.models import Job


class PipelineJob(Job):
    """Training / dashboards jobs (features.Job rows of kind train_sae or dashboards)."""

    class Meta:
        proxy = True
        verbose_name = "SAE pipeline job"
        verbose_name_plural = "SAE pipeline (train an SAE / add a source)"
