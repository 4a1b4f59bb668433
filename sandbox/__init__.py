"""The development sandbox (``aribot.sandbox``), not production core: a private, real Asterisk 22
to try aribot against (``aribot lab``), the demo (``aribot demo``) and what the tests run.

``provision`` builds the Debian sid chroot that holds Asterisk, ``asterisk_config`` renders an
instance's configuration files, ``asterisk`` runs one instance (``AsteriskLab``), ``ports``
finds free ports, ``run`` is the ``aribot lab`` command and ``demo`` the ``aribot demo`` command
(its caller speaks with the local voice plugin's espeak-ng voice). The test-only parts (sipp caller,
RTP sniffer, fixtures) live in tests/lab.
"""
