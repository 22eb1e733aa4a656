from heimdall_pipeline.resources.database import HeimdallDatabase
from heimdall_pipeline.resources.receiver_network import ReceiverNetwork

__all__ = ["HeimdallDatabase", "ReceiverNetwork"]
