from persist_rt.cli import main

main()
