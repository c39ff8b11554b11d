"""OpenVINO on the CPU: backend, precision hints, probe (localisation) and precision-advice marks."""
from posegate.backends.openvino.backend import OpenVinoBackend, OpenVinoSettings, OvSession
from posegate.backends.openvino.precision import inference_hint
from posegate.backends.openvino.probe import OvProbe

# what posegate.backends registers from this folder
BACKENDS = (OpenVinoBackend(),)

__all__ = ["BACKENDS", "OpenVinoBackend", "OpenVinoSettings", "OvProbe", "OvSession", "inference_hint"]
