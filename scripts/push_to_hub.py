"""Push a finished run's model folder to the Hugging Face Hub in one commit.

    python scripts/push_to_hub.py OUTPUT_DIR org/name [--private] [--revision REV]
        [--timm_repo org/name-timm --timm_dir DIR]

Exit codes: 0 pushed (or nothing changed), 1 the upload failed (local files kept), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from hf_simclr.hub import (
    HubPushError,
    InvalidModelFolderError,
    push_folder_to_hub,
    push_timm_folder_to_hub,
    retry_command,
    validate_model_folder,
)

PROG = "push_to_hub.py"


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("output_dir", help="folder written by the run: config.json, model.safetensors, code, card")
    parser.add_argument("repo_id", help="target model repo, e.g. org/simclr-r50")
    parser.add_argument("--private", action="store_true", help="create the repo as private (if it does not exist)")
    parser.add_argument("--revision", help="branch to commit to; created from main when missing")
    parser.add_argument("--timm_repo", help="also push the timm-native encoder export to this repo")
    parser.add_argument("--timm_dir", help="folder of the timm-native export (with --timm_repo)")
    parser.add_argument("--commit_message", default="Upload SimCLR model")
    args = parser.parse_args(argv)

    if bool(args.timm_repo) != bool(args.timm_dir):
        parser.error("--timm_repo and --timm_dir go together: pass both, or neither")
    try:  # check every input before the first byte is uploaded
        for repo_id in filter(None, (args.repo_id, args.timm_repo)):
            validate_repo_id(repo_id)
        validate_model_folder(args.output_dir, kind="simclr")
        if args.timm_dir:
            validate_model_folder(args.timm_dir, kind="timm")
    except (InvalidModelFolderError, HFValidationError) as err:
        parser.error(str(err).splitlines()[0])

    retry = retry_command(
        args.output_dir,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        timm_repo=args.timm_repo,
        timm_dir=args.timm_dir,
    )
    common = dict(private=args.private, revision=args.revision, retry=retry)
    try:
        print(push_folder_to_hub(args.output_dir, args.repo_id, commit_message=args.commit_message, **common))
        if args.timm_repo:
            print(push_timm_folder_to_hub(args.timm_dir, args.timm_repo, **common))
    except HubPushError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
