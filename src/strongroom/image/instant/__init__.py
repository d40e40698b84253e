"""Serving recovery points over NBD (``strongroom serve``) and instant recovery of VMs.

``exports`` (read-only point exports, writable overlays), ``serve`` (a point's NBD server
holding a shared vault lock), ``state`` (per-recovery state folders), ``supervise`` (the
background export process), ``recover`` (start, list, finalize, abort, resume; the libvirt
calls are in ``image/libvirt/instant.py``).  See ``docs/instant.md``.
"""
