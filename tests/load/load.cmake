#   parley-load (issue 11): a load client in C, many connections per
#   thread, so that the client is not what limits the figures.
#   tests/load/README.md says how to run it; tests/load/smoke.sh BUILD
#   runs it against a real host.
file (GLOB PARLEY_LOAD_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/load/*.c)
add_executable (parley-load ${PARLEY_LOAD_SOURCES})
#   pl_connection for pl_token_mint_hs256 (and pl_common's pl_buf, jansson)
target_link_libraries (parley-load PRIVATE pl_connection PkgConfig::CRYPTO Threads::Threads m)
