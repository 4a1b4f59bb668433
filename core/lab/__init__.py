"""A private, real Asterisk 22 to try aribot against (``aribot lab``) and to test it with.

``provision`` builds the Debian sid chroot that holds Asterisk, ``asterisk_config`` renders an
instance's configuration files, ``asterisk`` runs one instance (``AsteriskLab``), ``ports``
finds free ports and ``run`` is the ``aribot lab`` command. The test-only parts (sipp caller,
RTP sniffer, fixtures) live in tests/lab.
"""
