"""Serving recovery points over NBD (``strongroom serve``) and instant recovery of VMs.

``exports`` (read-only point exports, writable overlays), ``serve`` (a point's NBD server
holding a shared vault lock), ``tls`` (the server's TLS context, address rules),
``tlspsk`` (TLS with pre-shared keys through pyOpenSSL, the key-file parser), ``state``
(per-recovery state folders), ``supervise`` (the background export: start, stop),
``supervisor`` (the detached process restarting it), ``systemd`` (or a transient unit),
``recover`` (start as new, list, finalize, abort, resume) and ``inplace`` (start on the
point's own domain; the libvirt calls are in ``image/libvirt/instant.py``).  See
``docs/instant.md``.
"""
