#!/usr/bin/env python3
"""Create or change the sample VM used by the README demo (see docs/image.md).

    python scripts/demo_vm.py create DIR [--name demo-vm] [--formats qcow2,raw]
    python scripts/demo_vm.py change DIR

``create`` writes DIR/NAME.xml (libvirt domain XML) and two disks: vda, a GPT disk with an
ext4 partition, and vdb, an MBR disk with a FAT partition; ``change`` rewrites a file and adds
a new one inside each disk's filesystem.
"""

from strongroom.image.sample import main

if __name__ == "__main__":
    main()
