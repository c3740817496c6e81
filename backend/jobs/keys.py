"""Redis key names shared by the API, the workers and the sweeper."""

PREFIX = "biaslab"


def image_key(image_id: str) -> str:
    return f"{PREFIX}:image:{image_id}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}:cancel:{job_id}"


def alive_key(worker_name: str) -> str:
    return f"{PREFIX}:alive:{worker_name}"


def requeue_claim_key(job_id: str, execution_id: str) -> str:
    return f"{PREFIX}:requeued:{job_id}:{execution_id}"
