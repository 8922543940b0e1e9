"""``python -m datasets.phantom --out RAW --num N --seed S``: write a raw phantom set
(options: ``--help``; the generator is :mod:`datasets.phantom.generator`)."""
import logging

from datasets.phantom.generator import main, parse_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(parse_args())
