"""Files on disk: the artifact cache, pickle-free serialisation, content digests, safe npz, atomic writes."""
