#   libFuzzer targets, one per parser of outside bytes: tests/fuzz/fuzz_<name>.c
#   becomes fuzz_<name>, linked with the libraries the actors use. Included
#   only when PARLEY_FUZZ is ON (clang); `bin/parley fuzz` builds target fuzz.

file (GLOB PARLEY_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
add_custom_target (fuzz)
foreach (source ${PARLEY_FUZZ_SOURCES})
    get_filename_component (name ${source} NAME_WE)
    add_executable (${name} ${source})
    target_link_libraries (${name} PRIVATE pl_connection)
    target_link_options (${name} PRIVATE -fsanitize=fuzzer)
    add_dependencies (fuzz ${name})
endforeach ()
