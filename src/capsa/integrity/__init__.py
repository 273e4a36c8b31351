"""Signing and verifying SIF images, in the format of ``sylabs/sif`` ``pkg/integrity``.

- :mod:`~capsa.integrity.digests`: the metadata JSON a signature covers;
- :mod:`~capsa.integrity.sign` / :mod:`~capsa.integrity.verify`: adding and
  checking signature objects (OpenPGP clear-signed or DSSE envelopes);
- :mod:`~capsa.integrity.pgp` (GnuPG), :mod:`~capsa.integrity.pgpkeys`
  (keyring bytes), :mod:`~capsa.integrity.keyring` (``~/.apptainer/keys``),
  :mod:`~capsa.integrity.dsse` (PEM keys);
- :mod:`~capsa.integrity.policy`: a site's rule that images must be signed.

Nothing here is imported by ``capsa exec`` unless a policy asks for it.
"""
