"""smimegate.delivery: handing an externally issued key to its owner.

The PKCS#12 goes by mail through ``[smtp] relay`` (pfxmail), its password by SMS through
``[sms]`` (sms). Both wait in the store's persistent queue (queue), whose payloads the store
seals with the master key, and are retried with exponential backoff until they go through or
``[queue] give_up_days`` pass. ``pfx.deliver`` is what ``smimegate cert issue --send-pfx
--sms-password`` calls; ``queue.run_due`` is the worker.
"""

from smimegate.delivery.errors import DeliveryError

__all__ = ["DeliveryError"]
