from segmenter.cli import main

raise SystemExit(main())
